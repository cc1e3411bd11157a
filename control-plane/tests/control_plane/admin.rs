//! The admin API over a real gRPC server: authentication, objects, etags,
//! and every rejected allowlist entry reported as a field violation.

use ipgate_shared::proto::admin::v1::{
    Allowlist, AllowlistEntry, ApiKeyStatus, ApiStatus, CreateApiKeyRequest, CreateApiRequest,
    GetApiKeyRequest, GetApiRequest, GetRevisionStatusRequest, RouteRule, SetApiAllowlistRequest,
    SetApiKeyAllowlistRequest,
};
use tonic::Code;
use tonic_types::StatusExt;

use crate::{
    common::{Admin, Db, ENFORCER, OWNER, admin, admin_with},
    on_both_backends,
};

fn list(cidrs: &[&str]) -> Option<Allowlist> {
    Some(Allowlist {
        entries: cidrs
            .iter()
            .map(|c| AllowlistEntry {
                cidr: (*c).to_owned(),
                ..Default::default()
            })
            .collect(),
        report_only: false,
    })
}

async fn create_orders(admin: &mut Admin) -> String {
    admin
        .create_api(CreateApiRequest {
            wait_for_propagation: None,
            slug: "orders".into(),
            name: "Orders".into(),
            routes: vec![RouteRule {
                method: "GET".into(),
                path_prefix: "/orders".into(),
                scope: "orders:read".into(),
            }],
            validate_only: false,
        })
        .await
        .expect("create API");
    admin
        .create_api_key(CreateApiKeyRequest {
            api: "orders".into(),
            name: "first".into(),
            scopes: vec!["orders:read".into()],
            ..Default::default()
        })
        .await
        .expect("create key")
        .into_inner()
        .key
        .expect("key")
        .id
}

/// (field, description) of every violation in an INVALID_ARGUMENT status.
fn violations(status: &tonic::Status) -> Vec<(String, String)> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let bad = status
        .get_details_bad_request()
        .expect("a google.rpc.BadRequest detail");
    bad.field_violations
        .into_iter()
        .map(|v| (v.field, v.description))
        .collect()
}

/// Every rejected form from docs/entries.md, "Refused forms", submitted in one list
/// after a good entry: one violation each, naming it, nothing stored.
async fn every_rejected_entry_is_named_and_nothing_is_stored(db: Db) {
    let server = db.start().await;
    let mut admin = admin(server.addr).await;
    create_orders(&mut admin).await;
    let before = admin
        .set_api_allowlist(SetApiAllowlistRequest {
            wait_for_propagation: None,
            slug: "orders".into(),
            allowlist: list(&["198.51.100.7"]),
            etag: String::new(),
            options: None,
        })
        .await
        .expect("a good list")
        .into_inner()
        .api
        .expect("the API");

    // (entry, text its violation must contain)
    let rejected = [
        ("010.0.0.1", "leading zero"),
        ("0127.0.0.1/8", "leading zero"),
        ("1.2.3", "3 parts"),
        ("127.1", "2 parts"),
        ("0x7f.0.0.1", "not a decimal number"),
        ("fe80::1%eth0", "zone index"),
        ("1.2.3.4/33", "out of range"),
        ("1.2.3.4/", "missing the prefix length"),
        ("/24", "missing the address"),
        ("0.0.0.0/0", "/9 or narrower"),
        ("::/0", "/33 or narrower"),
        ("10.0.0.0/7", "/9 or narrower"),
        ("10.0.0.0/8", "--allow-private-ranges"),
        ("192.168.1.1/24", "--allow-private-ranges"),
        ("2001:db8::/32", "/33 or narrower"),
        ("203.0.113.5/24", "use 203.0.113.0/24"),
        ("10.0.0.0/16", "--allow-private-ranges"),
        ("192.168.1.1", "--allow-private-ranges"),
        ("fd00::/48", "--allow-private-ranges"),
        ("fe80::1", "--allow-private-ranges"),
    ];
    let mut cidrs = vec!["203.0.113.9"];
    cidrs.extend(rejected.iter().map(|(c, _)| *c));
    let status = admin
        .set_api_allowlist(SetApiAllowlistRequest {
            wait_for_propagation: None,
            slug: "orders".into(),
            allowlist: list(&cidrs),
            etag: String::new(),
            options: None,
        })
        .await
        .expect_err("the list is refused");
    let found = violations(&status);
    assert_eq!(found.len(), rejected.len(), "{found:#?}");
    for (i, ((cidr, needle), (field, description))) in rejected.iter().zip(&found).enumerate() {
        assert_eq!(field, &format!("allowlist.entries[{}].cidr", i + 1));
        assert!(description.contains(needle), "{cidr}: {description}");
        // The description names the entry it is about.
        assert!(description.contains(cidr), "{cidr}: {description}");
    }

    // Duplicates, after canonicalisation.
    let status = admin
        .set_api_allowlist(SetApiAllowlistRequest {
            wait_for_propagation: None,
            slug: "orders".into(),
            allowlist: list(&["203.0.113.5", "203.0.113.5/32"]),
            etag: String::new(),
            options: None,
        })
        .await
        .expect_err("duplicates are refused");
    let found = violations(&status);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, "allowlist.entries[1].cidr");
    assert!(found[0].1.contains("duplicates entry 0"), "{}", found[0].1);

    // Nothing was stored by any refused call.
    let after = admin
        .get_api(GetApiRequest {
            slug: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.allowlist, before.allowlist);
    assert_eq!((after.etag, after.revision), (before.etag, before.revision));
    server.shutdown().await.unwrap();
}

async fn a_key_holds_at_most_twenty_entries(db: Db) {
    let server = db.start().await;
    let mut admin = admin(server.addr).await;
    let key = create_orders(&mut admin).await;
    let entries: Vec<String> = (0..21).map(|i| format!("203.0.113.{i}")).collect();
    let refs: Vec<&str> = entries.iter().map(String::as_str).collect();
    let status = admin
        .set_api_key_allowlist(SetApiKeyAllowlistRequest {
            wait_for_propagation: None,
            id: key.clone(),
            allowlist: list(&refs),
            etag: String::new(),
            options: None,
        })
        .await
        .expect_err("21 entries are refused");
    let found = violations(&status);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, "allowlist.entries");
    assert!(found[0].1.contains("at most 20"), "{}", found[0].1);

    let stored = admin
        .set_api_key_allowlist(SetApiKeyAllowlistRequest {
            wait_for_propagation: None,
            id: key.clone(),
            allowlist: list(&refs[..20]),
            etag: String::new(),
            options: None,
        })
        .await
        .expect("20 entries are fine")
        .into_inner();
    assert_eq!(
        stored.key.unwrap().allowlist.unwrap().entries[0].cidr,
        "203.0.113.0/32"
    );
    server.shutdown().await.unwrap();
}

async fn callers_need_the_right_token(db: Db) {
    let server = db.start().await;
    let request = || GetApiRequest {
        slug: "orders".into(),
    };
    let mut anonymous = admin_with(server.addr, None).await;
    let status = anonymous.get_api(request()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().starts_with("missing"), "{status:?}");
    // A token without the word Bearer is malformed, not missing.
    for value in [
        OWNER.to_owned(),
        format!("Basic {OWNER}"),
        "Bearer".to_owned(),
    ] {
        let mut malformed = tonic::Request::new(request());
        let value = value.parse().expect("ascii");
        malformed.metadata_mut().insert("authorization", value);
        let status = anonymous.get_api(malformed).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert!(
            status.message().contains("malformed") && status.message().contains("Bearer <token>"),
            "{status:?}"
        );
    }
    let mut wrong = admin_with(server.addr, Some("ipg_admin_notARealToken")).await;
    assert_eq!(
        wrong.get_api(request()).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let mut enforcer = admin_with(server.addr, Some(ENFORCER)).await;
    assert_eq!(
        enforcer.get_api(request()).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let created = enforcer
        .create_api(CreateApiRequest {
            slug: "orders".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(created.code(), Code::PermissionDenied);
    server.shutdown().await.unwrap();
}

async fn objects_etags_and_errors(db: Db) {
    let server = db.start().await;
    let mut admin = admin(server.addr).await;
    let key_id = create_orders(&mut admin).await;

    let api = admin
        .get_api(GetApiRequest {
            slug: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (api.name.as_str(), api.status),
        ("Orders", ApiStatus::Active as i32)
    );
    assert_eq!((api.etag.as_str(), api.revision), ("1", 1));
    assert_eq!(api.routes[0].scope, "orders:read");

    let dup = admin
        .create_api(CreateApiRequest {
            slug: "orders".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    let missing = admin
        .get_api(GetApiRequest {
            slug: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let no_api = admin
        .create_api_key(CreateApiKeyRequest {
            api: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(no_api.code(), Code::NotFound);
    let no_key = admin
        .get_api_key(GetApiKeyRequest {
            id: "0123456789abcdef".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(no_key.code(), Code::NotFound);

    // A key: secret once at creation, never again; a visible prefix.
    let created = admin
        .create_api_key(CreateApiKeyRequest {
            api: "orders".into(),
            name: "second".into(),
            allowlist: list(&["203.0.113.0/24"]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let key = created.key.unwrap();
    assert!(created.secret.starts_with(&key.prefix));
    assert!(key.prefix.starts_with("ipg_live_"));
    let read = admin
        .get_api_key(GetApiKeyRequest { id: key.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.status, ApiKeyStatus::Active as i32);
    assert_eq!(read.api, "orders");
    assert_eq!(read.allowlist.unwrap().entries[0].cidr, "203.0.113.0/24");

    // Etags: the current one writes, a stale one is ABORTED and changes nothing.
    let first = admin
        .get_api_key(GetApiKeyRequest { id: key_id.clone() })
        .await
        .unwrap()
        .into_inner();
    let updated = admin
        .set_api_key_allowlist(SetApiKeyAllowlistRequest {
            wait_for_propagation: None,
            id: key_id.clone(),
            allowlist: list(&["198.51.100.0/24"]),
            etag: first.etag.clone(),
            options: None,
        })
        .await
        .expect("current etag")
        .into_inner()
        .key
        .expect("the key");
    assert_ne!(updated.etag, first.etag);
    let stale = admin
        .set_api_key_allowlist(SetApiKeyAllowlistRequest {
            wait_for_propagation: None,
            id: key_id.clone(),
            allowlist: list(&["203.0.113.1"]),
            etag: first.etag,
            options: None,
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    let status = admin
        .get_revision_status(GetRevisionStatusRequest { revision: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.current_revision, updated.revision);
    // No enforcer is connected: nothing has the revision in force.
    assert!(!status.live);
    let ahead = admin
        .get_revision_status(GetRevisionStatusRequest { revision: 99 })
        .await
        .unwrap_err();
    assert_eq!(ahead.code(), Code::InvalidArgument);
    server.shutdown().await.unwrap();
}

on_both_backends!(
    every_rejected_entry_is_named_and_nothing_is_stored,
    a_key_holds_at_most_twenty_entries,
    callers_need_the_right_token,
    objects_etags_and_errors,
);
