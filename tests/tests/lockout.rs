//! Lockout protection through a real enforcer, on SQLite and PostgreSQL:
//! callers seen in the usage log (127.0.0.2, 127.0.0.3 through the proxy)
//! are named when an allowlist write would start blocking them; the write
//! is refused with `FAILED_PRECONDITION` / `LOCKOUT_RISK`; a dry run shows
//! the preview and stores nothing (the revision does not move); with the
//! acknowledgement the write is stored and the enforcer blocks the caller.

use std::time::Duration;

use ipgate_shared::proto::admin::v1::{
    AddApiAllowlistEntriesRequest, Allowlist, AllowlistWriteOptions, GetApiKeyRequest,
    GetApiRequest, LockoutPreview, QueryUsageLogsRequest, RemoveApiKeyAllowlistEntriesRequest,
    SetApiAllowlistRequest, SetApiKeyAllowlistRequest,
};
use ipgate_tests::{
    Backend, World,
    admin::{ack, cidrs, current_revision, dry_run, entries, entry, expect_code},
    eventually,
};
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// The addresses a LOCKOUT_RISK refusal names, read from its details.
fn refused_addresses(status: &Status) -> Vec<String> {
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.reason, "LOCKOUT_RISK", "{info:?}");
    let failure = status
        .get_details_precondition_failure()
        .unwrap_or_else(|| panic!("no PreconditionFailure in {status:?}"));
    let mut addresses: Vec<String> = failure
        .violations
        .iter()
        .map(|v| {
            assert_eq!(v.r#type, "LOCKOUT_RISK", "{v:?}");
            assert!(!v.description.is_empty(), "each address says why: {v:?}");
            v.subject.clone()
        })
        .collect();
    addresses.sort();
    addresses
}

fn previewed(preview: Option<&LockoutPreview>) -> Vec<String> {
    let mut ips: Vec<String> = preview
        .map(|p| p.callers.iter().map(|c| c.client_ip.clone()).collect())
        .unwrap_or_default();
    ips.sort();
    ips
}

async fn key_list(w: &mut World) -> Vec<String> {
    let key = w
        .admin
        .get_api_key(GetApiKeyRequest {
            id: w.key_id.clone(),
        })
        .await
        .expect("read the key")
        .into_inner();
    cidrs(key.allowlist.as_ref())
}

async fn a_write_that_locks_out_active_callers_needs_confirmation(backend: Backend) {
    let mut w = World::start(&backend).await;
    // 127.0.0.2 and 127.0.0.3 call, and are let through (empty lists).
    for _ in 0..3 {
        for from in ["127.0.0.2", "127.0.0.3"] {
            let res = w.call(from, &w.key).await;
            assert_eq!(res.status, 200, "{from}: {res:?}");
        }
    }
    eventually(
        Duration::from_secs(10),
        "the calls in the usage log",
        || {
            let mut admin = w.admin.clone();
            async move {
                let entries = admin
                    .query_usage_logs(QueryUsageLogsRequest {
                        client_ip: "127.0.0.2/31".into(),
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .entries;
                (entries.len() >= 6).then_some(())
            }
        },
    )
    .await;
    let revision = current_revision(&mut w.admin).await;

    // A key list without 127.0.0.2: refused, naming 127.0.0.2 only (the
    // others stay on the list), and nothing changes.
    let keeps_3 = || entries(&["127.0.0.1", "127.0.0.3"]);
    let status = expect_code(
        w.admin
            .set_api_key_allowlist(SetApiKeyAllowlistRequest {
                id: w.key_id.clone(),
                allowlist: keeps_3(),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        "SetApiKeyAllowlist that blocks 127.0.0.2",
    );
    assert_eq!(refused_addresses(&status), ["127.0.0.2"]);
    println!("refused: {}", status.message());
    assert!(key_list(&mut w).await.is_empty());
    assert_eq!(current_revision(&mut w.admin).await, revision);

    // The dry run answers what would be stored and whom it blocks, and
    // stores nothing.
    let preview = w
        .admin
        .set_api_key_allowlist(SetApiKeyAllowlistRequest {
            id: w.key_id.clone(),
            allowlist: keeps_3(),
            options: dry_run(),
            ..Default::default()
        })
        .await
        .expect("a dry run is answered")
        .into_inner();
    assert!(preview.validate_only);
    assert_eq!(
        cidrs(preview.key.as_ref().and_then(|k| k.allowlist.as_ref())),
        ["127.0.0.1/32", "127.0.0.3/32"]
    );
    let lockout = preview.lockout.as_ref().expect("a lockout preview");
    assert_eq!(previewed(Some(lockout)), ["127.0.0.2"]);
    assert_eq!(lockout.total_callers, 1);
    assert!(lockout.callers[0].requests >= 3, "{lockout:?}");
    assert!(lockout.callers[0].last_seen.is_some(), "{lockout:?}");
    assert!(lockout.since.is_some(), "{lockout:?}");
    assert!(key_list(&mut w).await.is_empty());
    assert_eq!(
        current_revision(&mut w.admin).await,
        revision,
        "a dry run does not move the revision"
    );
    // A dry run of a list that blocks nobody active previews nobody.
    let harmless = w
        .admin
        .set_api_key_allowlist(SetApiKeyAllowlistRequest {
            id: w.key_id.clone(),
            allowlist: entries(&["127.0.0.0/29"]),
            options: dry_run(),
            ..Default::default()
        })
        .await
        .expect("a harmless dry run")
        .into_inner();
    assert!(
        previewed(harmless.lockout.as_ref()).is_empty(),
        "{harmless:?}"
    );

    // The API list is checked the same way: adding a first entry blocks
    // everyone else.
    let status = expect_code(
        w.admin
            .add_api_allowlist_entries(AddApiAllowlistEntriesRequest {
                slug: "orders".into(),
                entries: vec![entry("127.0.0.1", "this machine")],
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        "AddApiAllowlistEntries that blocks 127.0.0.2 and 127.0.0.3",
    );
    assert_eq!(refused_addresses(&status), ["127.0.0.2", "127.0.0.3"]);
    // A report-only list blocks nobody, so it needs no confirmation.
    w.admin
        .set_api_allowlist(SetApiAllowlistRequest {
            slug: "orders".into(),
            allowlist: Some(Allowlist {
                entries: vec![entry("127.0.0.1", "this machine")],
                report_only: true,
            }),
            ..Default::default()
        })
        .await
        .expect("a report-only list blocks nobody");
    w.admin
        .set_api_allowlist(SetApiAllowlistRequest {
            slug: "orders".into(),
            allowlist: entries(&[]),
            ..Default::default()
        })
        .await
        .expect("clearing a list blocks nobody");
    let api = w
        .admin
        .get_api(GetApiRequest {
            slug: "orders".into(),
        })
        .await
        .expect("read the API")
        .into_inner();
    assert!(cidrs(api.allowlist.as_ref()).is_empty());
    let revision = current_revision(&mut w.admin).await;

    // Confirmed: stored, the revision moves, and the enforcer blocks
    // 127.0.0.2 while 127.0.0.1 and 127.0.0.3 still pass.
    let stored = w
        .admin
        .set_api_key_allowlist(SetApiKeyAllowlistRequest {
            id: w.key_id.clone(),
            allowlist: keeps_3(),
            options: ack(),
            ..Default::default()
        })
        .await
        .expect("a confirmed write is stored")
        .into_inner();
    assert!(!stored.validate_only);
    assert_eq!(previewed(stored.lockout.as_ref()), ["127.0.0.2"]);
    assert!(current_revision(&mut w.admin).await > revision);
    assert_eq!(key_list(&mut w).await, ["127.0.0.1/32", "127.0.0.3/32"]);
    let blocked = w.wait_for("127.0.0.2", &w.key, 403).await;
    assert!(blocked.body.contains("IP_NOT_ALLOWED"), "{blocked:?}");
    assert_eq!(w.call("127.0.0.3", &w.key).await.status, 200);
    assert_eq!(w.call("127.0.0.1", &w.key).await.status, 200);

    // Removing an entry is checked too: 127.0.0.3 is active; 127.0.0.2 is
    // blocked already, so this change does not start blocking it.
    let status = expect_code(
        w.admin
            .remove_api_key_allowlist_entries(RemoveApiKeyAllowlistEntriesRequest {
                id: w.key_id.clone(),
                cidrs: vec!["127.0.0.3".into()],
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        "RemoveApiKeyAllowlistEntries that blocks 127.0.0.3",
    );
    assert_eq!(refused_addresses(&status), ["127.0.0.3"]);
    w.admin
        .remove_api_key_allowlist_entries(RemoveApiKeyAllowlistEntriesRequest {
            id: w.key_id.clone(),
            cidrs: vec!["127.0.0.3".into()],
            options: Some(AllowlistWriteOptions {
                validate_only: false,
                acknowledge_lockout_risk: true,
            }),
            ..Default::default()
        })
        .await
        .expect("confirmed removal");
    w.wait_for("127.0.0.3", &w.key, 403).await;
}

ipgate_tests::on_both_backends!(a_write_that_locks_out_active_callers_needs_confirmation);
