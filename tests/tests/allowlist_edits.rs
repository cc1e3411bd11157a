//! Entry-by-entry allowlist edits reach a real enforcer, for a key's list
//! and an API's list, on SQLite and PostgreSQL: add, update a label (seen
//! in the usage log) or an expiry in place, remove by any form of the
//! CIDR; dry runs change nothing; a report-only list blocks nobody and logs
//! `WOULD_BLOCK_IP`.

use std::time::{Duration, SystemTime};

use ipgate_shared::proto::admin::v1::{
    AddApiAllowlistEntriesRequest, AddApiKeyAllowlistEntriesRequest, Allowlist, GetApiKeyRequest,
    GetApiRequest, RemoveApiAllowlistEntriesRequest, RemoveApiKeyAllowlistEntriesRequest,
    SetApiAllowlistRequest, UpdateApiAllowlistEntryRequest, UpdateApiKeyAllowlistEntryRequest,
};
use ipgate_tests::{
    Backend, World,
    admin::{ack, cidrs, current_revision, dry_run, entry, expect_code, timestamp},
    world::API,
};
use tonic::Code;

const API_BODY: &str = r#"{"error":{"code":"IP_NOT_ALLOWED","message":"Request IP address is not in the API's allowlist"}}"#;

async fn key_list(w: &mut World) -> Vec<ipgate_shared::proto::admin::v1::AllowlistEntry> {
    w.admin
        .get_api_key(GetApiKeyRequest {
            id: w.key_id.clone(),
        })
        .await
        .expect("get key")
        .into_inner()
        .allowlist
        .unwrap_or_default()
        .entries
}

async fn key_list_edits_reach_the_enforcer(backend: Backend) {
    let mut w = World::start(&backend).await;
    let added = w
        .admin
        .add_api_key_allowlist_entries(AddApiKeyAllowlistEntriesRequest {
            id: w.key_id.clone(),
            entries: vec![entry("127.0.0.1", "this machine")],
            options: ack(),
            ..Default::default()
        })
        .await
        .expect("add the first entry")
        .into_inner();
    let first = &added
        .key
        .as_ref()
        .expect("key")
        .allowlist
        .as_ref()
        .expect("list")
        .entries[0];
    assert_eq!(first.cidr, "127.0.0.1/32");
    assert!(first.created_at.is_some(), "{first:?}");
    assert!(
        !first.created_by.is_empty(),
        "the token that added it: {first:?}"
    );
    w.wait_for("127.0.0.2", &w.key, 403).await;

    // A dry run of an addition changes nothing.
    let revision = current_revision(&mut w.admin).await;
    let dry = w
        .admin
        .add_api_key_allowlist_entries(AddApiKeyAllowlistEntriesRequest {
            id: w.key_id.clone(),
            entries: vec![entry("127.0.0.2", "visitor")],
            options: dry_run(),
            ..Default::default()
        })
        .await
        .expect("dry-run add")
        .into_inner();
    assert!(dry.validate_only);
    assert_eq!(
        cidrs(dry.key.as_ref().and_then(|k| k.allowlist.as_ref())),
        ["127.0.0.1/32", "127.0.0.2/32"]
    );
    assert_eq!(current_revision(&mut w.admin).await, revision);
    assert_eq!(key_list(&mut w).await.len(), 1);

    // Added: the visitor passes, and the usage log names its entry.
    w.admin
        .add_api_key_allowlist_entries(AddApiKeyAllowlistEntriesRequest {
            id: w.key_id.clone(),
            entries: vec![entry("127.0.0.2", "visitor")],
            ..Default::default()
        })
        .await
        .expect("add the visitor");
    let res = w.wait_for("127.0.0.2", &w.key, 200).await;
    let logged = w.logged(res.header("x-request-id")).await;
    assert_eq!(logged.matched_label, "visitor");
    // A duplicate is refused.
    let status = expect_code(
        w.admin
            .add_api_key_allowlist_entries(AddApiKeyAllowlistEntriesRequest {
                id: w.key_id.clone(),
                entries: vec![entry("127.0.0.2/32", "again")],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "adding an entry twice",
    );
    println!("duplicate: {}", status.message());

    // The label, changed in place, is what the next request logs.
    w.admin
        .update_api_key_allowlist_entry(UpdateApiKeyAllowlistEntryRequest {
            id: w.key_id.clone(),
            cidr: "127.0.0.2".into(),
            label: Some("visitor, renamed".into()),
            ..Default::default()
        })
        .await
        .expect("relabel");
    let (logged, _) = ipgate_tests::eventually(
        Duration::from_secs(10),
        "the new label in the usage log",
        || async {
            let res = w.call("127.0.0.2", &w.key).await;
            let logged = w.logged(res.header("x-request-id")).await;
            (logged.matched_label == "visitor, renamed").then_some(logged)
        },
    )
    .await;
    assert_eq!(logged.reason, "ALLOWED");

    // An expiry set in place, then cleared: the entry is permanent again.
    w.admin
        .update_api_key_allowlist_entry(UpdateApiKeyAllowlistEntryRequest {
            id: w.key_id.clone(),
            cidr: "127.0.0.2/32".into(),
            expires_at: Some(timestamp(SystemTime::now() + Duration::from_secs(3600))),
            ..Default::default()
        })
        .await
        .expect("set an expiry");
    assert!(key_list(&mut w).await[1].expires_at.is_some());
    w.admin
        .update_api_key_allowlist_entry(UpdateApiKeyAllowlistEntryRequest {
            id: w.key_id.clone(),
            cidr: "127.0.0.2/32".into(),
            clear_expires_at: true,
            ..Default::default()
        })
        .await
        .expect("clear the expiry");
    let list = key_list(&mut w).await;
    assert!(list[1].expires_at.is_none(), "{list:?}");
    assert_eq!(list[1].label, "visitor, renamed", "the label stays");

    // An expiry a moment ahead: the visitor is refused after it.
    let instant = SystemTime::now() + Duration::from_secs(2);
    w.admin
        .update_api_key_allowlist_entry(UpdateApiKeyAllowlistEntryRequest {
            id: w.key_id.clone(),
            cidr: "127.0.0.2".into(),
            expires_at: Some(timestamp(instant)),
            options: ack(),
            ..Default::default()
        })
        .await
        .expect("a short expiry");
    w.wait_for("127.0.0.2", &w.key, 403).await;
    assert!(SystemTime::now() >= instant, "refused before its expiry");

    // An entry that is not on the list cannot be changed.
    let status = w
        .admin
        .update_api_key_allowlist_entry(UpdateApiKeyAllowlistEntryRequest {
            id: w.key_id.clone(),
            cidr: "203.0.113.77".into(),
            label: Some("nobody".into()),
            ..Default::default()
        })
        .await
        .expect_err("updating a missing entry");
    assert!(
        matches!(status.code(), Code::NotFound | Code::InvalidArgument),
        "{status:?}"
    );

    // Removed, in a non-canonical form: the list is empty, everyone passes.
    w.admin
        .remove_api_key_allowlist_entries(RemoveApiKeyAllowlistEntriesRequest {
            id: w.key_id.clone(),
            cidrs: vec!["::ffff:127.0.0.1".into()],
            options: ack(),
            ..Default::default()
        })
        .await
        .expect("remove");
    let list = key_list(&mut w).await;
    assert!(
        list.iter().all(|e| e.cidr != "127.0.0.1/32"),
        "removed: {list:?}"
    );
    // What is left is the expired entry, if the store still holds it.
    if !list.is_empty() {
        w.admin
            .remove_api_key_allowlist_entries(RemoveApiKeyAllowlistEntriesRequest {
                id: w.key_id.clone(),
                cidrs: list.iter().map(|e| e.cidr.clone()).collect(),
                ..Default::default()
            })
            .await
            .expect("remove the rest");
    }
    w.wait_for("127.0.0.3", &w.key, 200).await;
}

async fn api_list_edits_reach_the_enforcer(backend: Backend) {
    let mut w = World::start(&backend).await;
    w.admin
        .add_api_allowlist_entries(AddApiAllowlistEntriesRequest {
            slug: API.into(),
            entries: vec![entry("127.0.0.1", "this machine"), entry("127.0.0.4", "")],
            options: ack(),
            ..Default::default()
        })
        .await
        .expect("add to the API list");
    // Blocked before authentication: any key, or none.
    let res = w.wait_for("127.0.0.2", &w.key, 403).await;
    assert_eq!(res.body, API_BODY);
    assert_eq!(w.call("127.0.0.2", "not-a-key").await.status, 403);
    assert_eq!(w.call("127.0.0.1", "not-a-key").await.status, 401);
    let res = w.call("127.0.0.1", &w.key).await;
    assert_eq!(res.status, 200);
    assert_eq!(
        w.logged(res.header("x-request-id")).await.matched_label,
        "this machine",
        "the API's entry is logged when the key has no list"
    );

    w.admin
        .update_api_allowlist_entry(UpdateApiAllowlistEntryRequest {
            slug: API.into(),
            cidr: "127.0.0.4/32".into(),
            label: Some("build server".into()),
            ..Default::default()
        })
        .await
        .expect("label in place");
    let api = w
        .admin
        .get_api(GetApiRequest { slug: API.into() })
        .await
        .expect("get API")
        .into_inner();
    let list = api.allowlist.expect("list").entries;
    assert_eq!(
        list.iter()
            .map(|e| (e.cidr.as_str(), e.label.as_str()))
            .collect::<Vec<_>>(),
        [
            ("127.0.0.1/32", "this machine"),
            ("127.0.0.4/32", "build server")
        ]
    );

    // Report-only: nobody is blocked; what would be is logged as such.
    w.admin
        .set_api_allowlist(SetApiAllowlistRequest {
            slug: API.into(),
            allowlist: Some(Allowlist {
                entries: list,
                report_only: true,
            }),
            ..Default::default()
        })
        .await
        .expect("report-only");
    let res = w.wait_for("127.0.0.2", &w.key, 200).await;
    assert_eq!(
        w.logged(res.header("x-request-id")).await.reason,
        "WOULD_BLOCK_IP"
    );

    w.admin
        .remove_api_allowlist_entries(RemoveApiAllowlistEntriesRequest {
            slug: API.into(),
            cidrs: vec!["127.0.0.1".into(), "127.0.0.4/32".into()],
            ..Default::default()
        })
        .await
        .expect("remove both");
    let api = w
        .admin
        .get_api(GetApiRequest { slug: API.into() })
        .await
        .expect("get API")
        .into_inner();
    let list = api.allowlist.unwrap_or_default();
    assert!(list.entries.is_empty(), "{list:?}");
    let res = w.call("127.0.0.2", &w.key).await;
    assert_eq!(res.status, 200);
    ipgate_tests::eventually(Duration::from_secs(10), "plain ALLOWED", || async {
        let res = w.call("127.0.0.2", &w.key).await;
        let logged = w.logged(res.header("x-request-id")).await;
        (logged.reason == "ALLOWED").then_some(())
    })
    .await;
}

/// An API's list holds up to 1,000 entries by default (a key's, 20).
async fn api_lists_hold_a_thousand_entries(backend: Backend) {
    let cp = ipgate_tests::ControlPlane::start(&backend);
    let mut admin = cp.admin().await;
    admin
        .create_api(ipgate_shared::proto::admin::v1::CreateApiRequest {
            slug: API.into(),
            name: "Orders".into(),
            ..Default::default()
        })
        .await
        .expect("create API");
    let addresses: Vec<String> = (1..=1001).map(|i| format!("2001:db8::{i:x}")).collect();
    let list = |n: usize| {
        Some(Allowlist {
            entries: addresses[..n].iter().map(|a| entry(a, "")).collect(),
            report_only: false,
        })
    };
    let stored = admin
        .set_api_allowlist(SetApiAllowlistRequest {
            slug: API.into(),
            allowlist: list(1000),
            ..Default::default()
        })
        .await
        .expect("1,000 entries")
        .into_inner();
    assert_eq!(
        stored
            .api
            .and_then(|a| a.allowlist)
            .map(|l| l.entries.len()),
        Some(1000)
    );
    let status = expect_code(
        admin
            .add_api_allowlist_entries(AddApiAllowlistEntriesRequest {
                slug: API.into(),
                entries: vec![entry(&addresses[1000], "one too many")],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "the 1,001st entry",
    );
    assert!(status.message().contains("1000"), "{status:?}");
}

ipgate_tests::on_both_backends!(
    key_list_edits_reach_the_enforcer,
    api_list_edits_reach_the_enforcer,
    api_lists_hold_a_thousand_entries,
);
