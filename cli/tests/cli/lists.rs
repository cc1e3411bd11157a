//! `ipgate apis allowlist …` and `ipgate keys allowlist …`:
//! show, set, add, remove, update, dry runs.

use serde_json::Value;

use crate::support::{Env, s};

fn cidrs(list_owner: &Value) -> Vec<String> {
    list_owner
        .pointer("/allowlist/entries")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .map(|e| e["cidr"].as_str().expect("cidr").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn current_revision(env: &Env) -> String {
    s(&env.json(&["revision", "status"]), "/currentRevision").to_owned()
}

/// Runs the same journey on an API's list (`apis allowlist … API`) and on a
/// key's (`keys allowlist … KEY_ID`).
fn journey(env: &Env, group: &str, target: &str, owner: &str) {
    let show = |env: &Env| env.json(&[group, "allowlist", "show", target]);

    // add, with a label and an expiry
    let added = env.json(&[
        group,
        "allowlist",
        "add",
        target,
        "203.0.113.0/24",
        "--label",
        "Office",
        "--expires-in",
        "2h",
    ]);
    assert_eq!(
        s(&added, &format!("/{owner}/allowlist/entries/0/label")),
        "Office"
    );
    assert!(
        added
            .pointer(&format!("/{owner}/allowlist/entries/0/expiresAt"))
            .is_some(),
        "{added:#}"
    );
    let human = env.ipgate(&[group, "allowlist", "add", target, "2001:db8::1=Laptop"]);
    let out = human.ok();
    assert!(out.contains("Stored at revision"), "{out}");
    assert!(
        out.contains("2001:db8::1/128") && out.contains("Laptop"),
        "{out}"
    );
    assert!(
        out.contains("in 2h"),
        "the expiry reads relative to now: {out}"
    );

    // show
    let shown = show(env);
    assert_eq!(cidrs(&shown), ["203.0.113.0/24", "2001:db8::1/128"]);
    let etag = s(&shown, "/etag").to_owned();
    let human = env.ipgate(&[group, "allowlist", "show", target]);
    let out = human.ok();
    assert!(out.contains("Allowlist: 2 entries, enforced"), "{out}");
    assert!(
        out.contains(&format!("Etag:      {etag}")) || out.contains(&etag),
        "{out}"
    );

    // update in place: new label, then no expiry
    let updated = env.json(&[
        group,
        "allowlist",
        "update",
        target,
        "203.0.113.0/24",
        "--label",
        "HQ",
        "--no-expiry",
        "--etag",
        &etag,
    ]);
    assert_eq!(
        s(&updated, &format!("/{owner}/allowlist/entries/0/label")),
        "HQ"
    );
    assert!(
        updated
            .pointer(&format!("/{owner}/allowlist/entries/0/expiresAt"))
            .is_none(),
        "{updated:#}"
    );
    let at = "2030-01-02T03:04:05Z";
    let updated = env.json(&[
        group,
        "allowlist",
        "update",
        target,
        "2001:db8::1",
        "--expires-at",
        at,
    ]);
    assert_eq!(
        s(&updated, &format!("/{owner}/allowlist/entries/1/expiresAt")),
        at
    );
    // the etag read before is stale now
    let stale = env.ipgate(&[
        group,
        "allowlist",
        "add",
        target,
        "198.51.100.0/24",
        "--etag",
        &etag,
    ]);
    assert!(stale.failed().contains("ABORTED"), "{stale:?}");

    // a dry run previews and stores nothing: the revision does not move
    let before = current_revision(env);
    let dry = env.json(&[
        group,
        "allowlist",
        "remove",
        target,
        "203.0.113.0/24",
        "--dry-run",
    ]);
    assert_eq!(dry["validateOnly"], true, "{dry:#}");
    assert_eq!(cidrs(&dry[owner]), ["2001:db8::1/128"]);
    let human = env.ipgate(&[
        group,
        "allowlist",
        "set",
        target,
        "198.51.100.0/24",
        "--dry-run",
    ]);
    let out = human.ok();
    assert!(out.starts_with("Dry run: nothing was stored"), "{out}");
    assert!(
        out.contains("Lockout check:") || out.contains("Lockout risk:"),
        "{out}"
    );
    assert_eq!(current_revision(env), before, "dry runs move no revision");
    assert_eq!(cidrs(&show(env)).len(), 2);

    // remove
    let removed = env.json(&[group, "allowlist", "remove", target, "2001:db8::1"]);
    assert_eq!(cidrs(&removed[owner]), ["203.0.113.0/24"]);

    // set: from arguments with report-only, from a JSON file, then empty
    let set = env.json(&[
        group,
        "allowlist",
        "set",
        target,
        "198.51.100.0/24=Partner",
        "192.0.2.7",
        "--label",
        "Bastion",
        "--report-only",
    ]);
    assert_eq!(cidrs(&set[owner]), ["198.51.100.0/24", "192.0.2.7/32"]);
    assert_eq!(
        s(&set, &format!("/{owner}/allowlist/entries/1/label")),
        "Bastion"
    );
    assert_eq!(set[owner]["allowlist"]["reportOnly"], true);
    let file = env.dir.path().join(format!("{group}-list.json"));
    std::fs::write(
        &file,
        r#"{"entries": [{"cidr": "203.0.113.9", "label": "from a file"}], "reportOnly": false}"#,
    )
    .expect("write list file");
    let set = env.json(&[
        group,
        "allowlist",
        "set",
        target,
        "--file",
        file.to_str().expect("utf-8"),
    ]);
    assert_eq!(cidrs(&set[owner]), ["203.0.113.9/32"]);
    assert!(set[owner]["allowlist"].get("reportOnly").is_none());
    let cleared = env.json(&[group, "allowlist", "set", target, "--empty"]);
    assert!(cidrs(&cleared[owner]).is_empty(), "{cleared:#}");
    let human = env.ipgate(&[group, "allowlist", "show", target]);
    assert!(
        human
            .ok()
            .contains("Allowlist: empty (every address may pass)"),
        "{human:?}"
    );
    // `set` with nothing to set is refused before any call
    let nothing = env.ipgate(&[group, "allowlist", "set", target]);
    assert_eq!(nothing.code, Some(2), "{nothing:?}");
}

#[test]
fn an_apis_allowlist_is_edited_entry_by_entry() {
    let env = Env::start();
    env.ipgate(&["apis", "create", "orders"]).ok();
    journey(&env, "apis", "orders", "api");
}

#[test]
fn a_keys_allowlist_is_edited_entry_by_entry() {
    let env = Env::start();
    env.ipgate(&["apis", "create", "orders"]).ok();
    let key = env.json(&["keys", "create", "--api", "orders", "--name", "k"]);
    let id = s(&key, "/key/id").to_owned();
    journey(&env, "keys", &id, "key");
}
