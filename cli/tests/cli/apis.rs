//! `ipgate apis create|get|list|update|delete`.

use crate::support::{Env, s};

#[test]
fn apis_are_created_read_listed_updated_and_deleted() {
    let env = Env::start();

    // A dry run stores nothing.
    let dry = env.json(&[
        "apis",
        "create",
        "orders",
        "--name",
        "Orders API",
        "--dry-run",
    ]);
    assert_eq!(s(&dry, "/slug"), "orders");
    env.ipgate(&["apis", "get", "orders"]).failed();

    let human = env.ipgate(&[
        "apis",
        "create",
        "orders",
        "--name",
        "Orders API",
        "--route",
        "POST /orders=orders:write",
        "--route",
        "/admin=admin",
    ]);
    let out = human.ok();
    assert!(out.contains("Created API \"orders\""), "{out}");
    assert!(out.contains("orders:write"), "{out}");
    assert!(out.contains("Allowlist: empty"), "{out}");

    let api = env.json(&["apis", "get", "orders"]);
    assert_eq!(s(&api, "/name"), "Orders API");
    assert_eq!(s(&api, "/status"), "API_STATUS_ACTIVE");
    assert_eq!(s(&api, "/routes/0/method"), "POST");
    assert_eq!(s(&api, "/routes/0/pathPrefix"), "/orders");
    assert_eq!(s(&api, "/routes/1/scope"), "admin");
    let etag = s(&api, "/etag").to_owned();

    env.ipgate(&["apis", "create", "billing", "--name", "Billing"])
        .ok();
    let list = env.json(&["apis", "list"]);
    let slugs: Vec<&str> = list["apis"]
        .as_array()
        .expect("apis")
        .iter()
        .map(|a| a["slug"].as_str().expect("slug"))
        .collect();
    assert!(
        slugs.contains(&"orders") && slugs.contains(&"billing"),
        "{list:#}"
    );
    let table = env.ipgate(&["apis", "list"]);
    let out = table.ok();
    assert!(
        out.lines().next().is_some_and(|h| h.starts_with("SLUG")),
        "{out}"
    );
    assert!(out.contains("Orders API"), "{out}");

    // Update with the etag just read; the same etag again is stale.
    let updated = env.json(&[
        "apis",
        "update",
        "orders",
        "--name",
        "Orders",
        "--status",
        "disabled",
        "--clear-routes",
        "--etag",
        &etag,
    ]);
    assert_eq!(s(&updated, "/name"), "Orders");
    assert_eq!(s(&updated, "/status"), "API_STATUS_DISABLED");
    assert!(updated.get("routes").is_none(), "{updated:#}");
    let stale = env.ipgate(&[
        "apis", "update", "orders", "--status", "active", "--etag", &etag,
    ]);
    let err = stale.failed();
    assert!(err.contains("ABORTED"), "{err}");
    assert!(err.contains("--etag"), "{err}");

    // An update that changes nothing is refused before any call.
    let nothing = env.ipgate(&["apis", "update", "orders"]);
    assert_eq!(nothing.code, Some(2), "{nothing:?}");
    assert!(nothing.stderr.contains("--name"), "{nothing:?}");

    let disabled = env.json(&["apis", "list", "--status", "disabled"]);
    assert_eq!(
        disabled["apis"].as_array().map(Vec::len),
        Some(1),
        "{disabled:#}"
    );

    // Delete: a dry run keeps it; --force also revokes its keys.
    let key = env.json(&["keys", "create", "--api", "billing", "--name", "k"]);
    let key_id = s(&key, "/key/id").to_owned();
    let refused = env.ipgate(&["apis", "delete", "billing"]);
    let err = refused.failed();
    assert!(err.starts_with("error: FAILED_PRECONDITION"), "{err}");
    let dry = env.json(&["apis", "delete", "billing", "--force", "--dry-run"]);
    assert_eq!(s(&dry, "/revokedKeyIds/0"), key_id);
    let human = env.ipgate(&["apis", "delete", "billing", "--force", "--dry-run"]);
    let out = human.ok();
    assert!(
        out.contains("would be deleted") && out.contains(&key_id),
        "{out}"
    );
    env.json(&["apis", "get", "billing"]);
    assert_eq!(
        s(&env.json(&["keys", "get", &key_id]), "/status"),
        "API_KEY_STATUS_ACTIVE"
    );
    let deleted = env.json(&["apis", "delete", "billing", "--force"]);
    assert_eq!(s(&deleted, "/api/slug"), "billing");
    assert_eq!(s(&deleted, "/revokedKeyIds/0"), key_id);
    let gone = env.ipgate(&["apis", "get", "billing"]);
    assert!(gone.failed().contains("NOT_FOUND"), "{gone:?}");
    let human = env.ipgate(&["apis", "delete", "orders"]);
    assert!(human.ok().contains("Deleted API \"orders\""), "{human:?}");
}
