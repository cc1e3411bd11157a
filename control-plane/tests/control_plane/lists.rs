//! Allowlist editing for keys and APIs: add, remove, update in place,
//! dry runs, lockout protection, concurrent editors, and the sweep that
//! removes expired entries.

use std::time::{Duration, SystemTime};

use ipgate_control_plane::store::Store;
use ipgate_shared::{
    proto::{
        admin::v1::{
            AddApiAllowlistEntriesRequest, AddApiKeyAllowlistEntriesRequest, Allowlist,
            AllowlistEntry, AllowlistWriteOptions, CreateApiKeyRequest, CreateApiRequest,
            CreateTenantRequest, CreateTokenRequest, DeleteApiRequest, GetApiKeyRequest,
            GetApiRequest, GetRevisionStatusRequest, ListAuditEventsRequest,
            RemoveApiAllowlistEntriesRequest, RemoveApiKeyAllowlistEntriesRequest,
            RevokeApiKeyRequest, RevokeTokenRequest, RotateApiKeyRequest, SetApiAllowlistRequest,
            SetApiKeyAllowlistRequest, TokenRole, UpdateApiAllowlistEntryRequest,
            UpdateApiKeyAllowlistEntryRequest, UpdateApiKeyRequest, UpdateApiRequest,
        },
        sync::v1::change::Kind as ChangeKind,
    },
    time,
};
use tonic::Code;
use tonic_types::StatusExt;

use crate::{
    common::{Admin, Db, ENFORCER, OWNER, admin, code, new_tenant, report, usage_event},
    on_both_backends,
    sync::{Enforcer, PATIENCE},
};

fn entry(cidr: &str, label: &str) -> AllowlistEntry {
    AllowlistEntry {
        cidr: cidr.into(),
        label: label.into(),
        ..Default::default()
    }
}

fn list(cidrs: &[&str], report_only: bool) -> Option<Allowlist> {
    Some(Allowlist {
        entries: cidrs.iter().map(|c| entry(c, "")).collect(),
        report_only,
    })
}

fn ack() -> Option<AllowlistWriteOptions> {
    Some(AllowlistWriteOptions {
        validate_only: false,
        acknowledge_lockout_risk: true,
    })
}

fn dry() -> Option<AllowlistWriteOptions> {
    Some(AllowlistWriteOptions {
        validate_only: true,
        acknowledge_lockout_risk: false,
    })
}

/// The API `orders` and one key of it: the key's id.
async fn orders(admin: &mut Admin) -> String {
    admin
        .create_api(CreateApiRequest {
            slug: "orders".into(),
            ..Default::default()
        })
        .await
        .expect("create API");
    admin
        .create_api_key(CreateApiKeyRequest {
            api: "orders".into(),
            name: "shop".into(),
            ..Default::default()
        })
        .await
        .expect("create key")
        .into_inner()
        .key
        .expect("key")
        .id
}

async fn key_cidrs(admin: &mut Admin, id: &str) -> Vec<(String, String)> {
    let key = admin
        .get_api_key(GetApiKeyRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner();
    key.allowlist
        .unwrap()
        .entries
        .into_iter()
        .map(|e| (e.cidr, e.label))
        .collect()
}

fn fields(status: &tonic::Status) -> Vec<(String, String)> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .expect("field violations")
        .field_violations
        .into_iter()
        .map(|v| (v.field, v.description))
        .collect()
}

async fn entries_are_added_removed_and_updated(db: Db) {
    let server = db.start().await;
    let mut admin = admin(server.addr).await;
    let id = orders(&mut admin).await;
    let owner_id = admin
        .list_tokens(ipgate_shared::proto::admin::v1::ListTokensRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tokens
        .into_iter()
        .find(|t| t.role == TokenRole::Owner as i32)
        .unwrap()
        .id;

    let added = admin
        .add_api_key_allowlist_entries(AddApiKeyAllowlistEntriesRequest {
            id: id.clone(),
            entries: vec![entry("203.0.113.5", "shop"), entry("2001:db8::/48", "v6")],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!added.validate_only);
    assert_eq!(added.lockout.unwrap().total_callers, 0);
    let key = added.key.unwrap();
    let first = &key.allowlist.as_ref().unwrap().entries[0];
    assert_eq!(first.cidr, "203.0.113.5/32");
    assert_eq!(first.created_by, owner_id);
    let created_at = first.created_at;
    assert!(created_at.is_some());

    // Already there, in any form: refused, naming the entry.
    let dup = admin
        .add_api_key_allowlist_entries(AddApiKeyAllowlistEntriesRequest {
            id: id.clone(),
            entries: vec![entry("192.0.2.1", ""), entry("::ffff:203.0.113.5", "")],
            ..Default::default()
        })
        .await
        .unwrap_err();
    let found = fields(&dup);
    assert_eq!(found[0].0, "entries[1].cidr");
    assert!(found[0].1.contains("203.0.113.5/32"), "{found:?}");
    // Over the limit of 20.
    let many: Vec<AllowlistEntry> = (0..19)
        .map(|i| entry(&format!("198.51.100.{i}"), ""))
        .collect();
    let over = admin
        .add_api_key_allowlist_entries(AddApiKeyAllowlistEntriesRequest {
            id: id.clone(),
            entries: many,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&over)[0].0, "entries");
    assert!(fields(&over)[0].1.contains("at most 20"));

    // Update in place: label, then expiry, then no expiry; the origin stays.
    let later = SystemTime::now() + Duration::from_secs(3600);
    let updated = admin
        .update_api_key_allowlist_entry(UpdateApiKeyAllowlistEntryRequest {
            id: id.clone(),
            cidr: "203.0.113.5".into(),
            label: Some("shop server".into()),
            expires_at: Some(time::to_timestamp(later)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .key
        .unwrap();
    let e = &updated.allowlist.unwrap().entries[0];
    assert_eq!(
        (e.label.as_str(), e.created_at),
        ("shop server", created_at)
    );
    assert!(e.expires_at.is_some());
    let cleared = admin
        .update_api_key_allowlist_entry(UpdateApiKeyAllowlistEntryRequest {
            id: id.clone(),
            cidr: "203.0.113.5/32".into(),
            clear_expires_at: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .key
        .unwrap();
    let e = &cleared.allowlist.unwrap().entries[0];
    assert_eq!((e.label.as_str(), e.expires_at), ("shop server", None));
    let absent = admin
        .update_api_key_allowlist_entry(UpdateApiKeyAllowlistEntryRequest {
            id: id.clone(),
            cidr: "192.0.2.1".into(),
            label: Some("x".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&absent)[0].0, "cidr");
    assert!(
        fields(&absent)[0]
            .1
            .contains("192.0.2.1/32 is not on the list")
    );
    let both = admin
        .update_api_key_allowlist_entry(UpdateApiKeyAllowlistEntryRequest {
            id: id.clone(),
            cidr: "203.0.113.5".into(),
            expires_at: Some(time::to_timestamp(later)),
            clear_expires_at: true,
            ..Default::default()
        })
        .await;
    assert_eq!(code(both), Code::InvalidArgument);

    // Remove, by any form that parses to the entry; an absent one is named.
    let missing = admin
        .remove_api_key_allowlist_entries(RemoveApiKeyAllowlistEntriesRequest {
            id: id.clone(),
            cidrs: vec!["2001:db8::/48".into(), "192.0.2.1".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    let found = fields(&missing);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, "cidrs[1]");
    assert_eq!(key_cidrs(&mut admin, &id).await.len(), 2);
    admin
        .remove_api_key_allowlist_entries(RemoveApiKeyAllowlistEntriesRequest {
            id: id.clone(),
            cidrs: vec!["2001:0db8:0000::/48".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        key_cidrs(&mut admin, &id).await,
        [("203.0.113.5/32".to_owned(), "shop server".to_owned())]
    );

    // The same shapes for an API's list; report-only is kept by edits.
    admin
        .set_api_allowlist(SetApiAllowlistRequest {
            slug: "orders".into(),
            allowlist: list(&["203.0.113.0/24"], true),
            ..Default::default()
        })
        .await
        .unwrap();
    let api = admin
        .add_api_allowlist_entries(AddApiAllowlistEntriesRequest {
            slug: "orders".into(),
            entries: vec![entry("198.51.100.0/24", "partner")],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .api
        .unwrap();
    let l = api.allowlist.unwrap();
    assert!(l.report_only);
    assert_eq!(l.entries.len(), 2);
    admin
        .update_api_allowlist_entry(UpdateApiAllowlistEntryRequest {
            slug: "orders".into(),
            cidr: "198.51.100.0/24".into(),
            label: Some("partner EU".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let api = admin
        .remove_api_allowlist_entries(RemoveApiAllowlistEntriesRequest {
            slug: "orders".into(),
            cidrs: vec!["203.0.113.0/24".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .api
        .unwrap();
    let l = api.allowlist.unwrap();
    assert_eq!(
        (l.entries[0].cidr.as_str(), l.entries[0].label.as_str()),
        ("198.51.100.0/24", "partner EU")
    );

    let actions = |object_type: &str| {
        let mut admin = admin.clone();
        let object_type = object_type.to_owned();
        async move {
            let events = admin
                .list_audit_events(ListAuditEventsRequest {
                    object_type,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .events;
            events.into_iter().map(|e| e.action).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        actions("api_key").await,
        [
            "api_key.allowlist.remove",
            "api_key.allowlist.update",
            "api_key.allowlist.update",
            "api_key.allowlist.add",
            "api_key.create"
        ]
    );
    assert_eq!(
        actions("api").await,
        [
            "api.allowlist.remove",
            "api.allowlist.update",
            "api.allowlist.add",
            "api.allowlist.set",
            "api.create"
        ]
    );
    server.shutdown().await.unwrap();
}

/// Every write with `validate_only` answers what it would store and stores
/// nothing: the revision, the objects and the audit log stay as they were.
async fn validate_only_stores_nothing(db: Db) {
    let server = db.start().await;
    let mut admin = admin(server.addr).await;
    let id = orders(&mut admin).await;
    let revision = |mut admin: Admin| async move {
        admin
            .get_revision_status(GetRevisionStatusRequest { revision: 0 })
            .await
            .unwrap()
            .into_inner()
            .current_revision
    };
    let audit_count = |mut admin: Admin| async move {
        admin
            .list_audit_events(ListAuditEventsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .events
            .len()
    };
    let before = (
        revision(admin.clone()).await,
        audit_count(admin.clone()).await,
        admin
            .get_api(GetApiRequest {
                slug: "orders".into(),
            })
            .await
            .unwrap()
            .into_inner(),
        admin
            .get_api_key(GetApiKeyRequest { id: id.clone() })
            .await
            .unwrap()
            .into_inner(),
    );
    let slug = || "orders".to_owned();
    let key = || id.clone();
    let a = &mut admin;
    let api = a
        .create_api(CreateApiRequest {
            slug: "billing".into(),
            validate_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(api.slug, "billing");
    let made = a
        .create_api_key(CreateApiKeyRequest {
            api: slug(),
            validate_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(made.secret.is_empty() && made.key.is_some());
    let results = [
        code(
            a.update_api(UpdateApiRequest {
                slug: slug(),
                name: Some("x".into()),
                validate_only: true,
                ..Default::default()
            })
            .await,
        ),
        code(
            a.delete_api(DeleteApiRequest {
                slug: slug(),
                force: true,
                validate_only: true,
                ..Default::default()
            })
            .await,
        ),
        code(
            a.set_api_allowlist(SetApiAllowlistRequest {
                slug: slug(),
                allowlist: list(&["203.0.113.0/24"], false),
                options: dry(),
                ..Default::default()
            })
            .await,
        ),
        code(
            a.add_api_allowlist_entries(AddApiAllowlistEntriesRequest {
                slug: slug(),
                entries: vec![entry("192.0.2.1", "")],
                options: dry(),
                ..Default::default()
            })
            .await,
        ),
        code(
            a.update_api_key(UpdateApiKeyRequest {
                id: key(),
                name: Some("x".into()),
                validate_only: true,
                ..Default::default()
            })
            .await,
        ),
        code(
            a.rotate_api_key(RotateApiKeyRequest {
                id: key(),
                validate_only: true,
                ..Default::default()
            })
            .await,
        ),
        code(
            a.revoke_api_key(RevokeApiKeyRequest {
                id: key(),
                validate_only: true,
                ..Default::default()
            })
            .await,
        ),
        code(
            a.set_api_key_allowlist(SetApiKeyAllowlistRequest {
                id: key(),
                allowlist: list(&["203.0.113.5"], false),
                options: dry(),
                ..Default::default()
            })
            .await,
        ),
        code(
            a.add_api_key_allowlist_entries(AddApiKeyAllowlistEntriesRequest {
                id: key(),
                entries: vec![entry("192.0.2.1", "")],
                options: dry(),
                ..Default::default()
            })
            .await,
        ),
        code(
            a.create_token(CreateTokenRequest {
                name: "x".into(),
                role: TokenRole::Viewer.into(),
                validate_only: true,
            })
            .await,
        ),
        code(
            a.create_tenant(CreateTenantRequest {
                id: "acme".into(),
                validate_only: true,
                ..Default::default()
            })
            .await,
        ),
    ];
    assert!(results.iter().all(|c| *c == Code::Ok), "{results:?}");
    let dry_set = a
        .set_api_key_allowlist(SetApiKeyAllowlistRequest {
            id: key(),
            allowlist: list(&["203.0.113.5"], false),
            options: dry(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(dry_set.validate_only);
    assert_eq!(
        dry_set.key.unwrap().allowlist.unwrap().entries[0].cidr,
        "203.0.113.5/32"
    );
    // A dry run still checks everything: a stale etag is refused.
    let stale = a
        .set_api_key_allowlist(SetApiKeyAllowlistRequest {
            id: key(),
            etag: "1".into(),
            options: dry(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(stale), Code::Aborted);

    let after = (
        revision(admin.clone()).await,
        audit_count(admin.clone()).await,
        admin
            .get_api(GetApiRequest {
                slug: "orders".into(),
            })
            .await
            .unwrap()
            .into_inner(),
        admin
            .get_api_key(GetApiKeyRequest { id: id.clone() })
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(after, before);
    assert_eq!(
        code(
            admin
                .get_api(GetApiRequest {
                    slug: "billing".into()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        admin
            .list_tokens(ipgate_shared::proto::admin::v1::ListTokensRequest::default())
            .await
            .unwrap()
            .into_inner()
            .tokens
            .len(),
        2
    );
    let revoke = admin
        .revoke_token(RevokeTokenRequest {
            id: "tok_none".into(),
            validate_only: true,
        })
        .await;
    assert_eq!(code(revoke), Code::NotFound);
    server.shutdown().await.unwrap();
}

/// A write that would block callers seen (allowed) in the last 24 hours is
/// refused with LOCKOUT_RISK, listing them; a dry run previews them; the
/// acknowledgement stores it.
async fn lockout_needs_acknowledging(db: Db) {
    let server = db.start().await;
    let mut admin = admin(server.addr).await;
    let id = orders(&mut admin).await;
    let now = SystemTime::now();
    let mut events = vec![
        usage_event("orders", &id, "198.51.100.7", "ALLOWED", now),
        usage_event("orders", &id, "203.0.113.9", "WOULD_BLOCK_IP", now),
        usage_event(
            "orders",
            &id,
            "203.0.113.9",
            "ALLOWED",
            now - Duration::from_secs(60),
        ),
        usage_event("orders", &id, "203.0.113.5", "ALLOWED", now),
        // Blocked already, long ago, or without this key: not at risk.
        usage_event("orders", &id, "192.0.2.1", "IP_NOT_ALLOWED_KEY", now),
        usage_event(
            "orders",
            &id,
            "192.0.2.2",
            "ALLOWED",
            now - Duration::from_secs(25 * 3600),
        ),
        usage_event("orders", "", "192.0.2.3", "ALLOWED", now),
    ];
    events.push(usage_event(
        "orders",
        &id,
        "::ffff:198.51.100.7",
        "ALLOWED",
        now,
    ));
    report(server.addr, ENFORCER, events).await;
    // Another tenant's enforcer reporting this key changes nothing here.
    let other = new_tenant(server.addr, "beta").await;
    let mut beta = crate::common::admin_with(server.addr, Some(&other)).await;
    let beta_enforcer = crate::common::new_token(&mut beta, TokenRole::Enforcer).await;
    report(
        server.addr,
        &beta_enforcer,
        vec![usage_event("orders", &id, "192.0.2.77", "ALLOWED", now)],
    )
    .await;

    let set = |options| SetApiKeyAllowlistRequest {
        id: id.clone(),
        allowlist: list(&["203.0.113.5"], false),
        options,
        ..Default::default()
    };
    let before = admin
        .get_api_key(GetApiKeyRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    let refused = admin.set_api_key_allowlist(set(None)).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let details = refused.get_error_details();
    let info = details.error_info().expect("ErrorInfo");
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        ("LOCKOUT_RISK", "ipgate")
    );
    assert_eq!(info.metadata["total"], "2");
    assert_eq!(info.metadata["addresses"], "198.51.100.7,203.0.113.9");
    let violations = &details
        .precondition_failure()
        .expect("PreconditionFailure")
        .violations;
    let subjects: Vec<&str> = violations.iter().map(|v| v.subject.as_str()).collect();
    assert_eq!(subjects, ["198.51.100.7", "203.0.113.9"]);
    assert!(violations.iter().all(|v| v.r#type == "LOCKOUT_RISK"));
    assert!(
        refused.message().contains("198.51.100.7 (2 requests)"),
        "{}",
        refused.message()
    );
    assert!(refused.message().contains("203.0.113.9 (2 requests)"));
    let unchanged = admin
        .get_api_key(GetApiKeyRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unchanged, before);

    // The dry run previews the same callers, busiest first.
    let preview = admin
        .set_api_key_allowlist(set(dry()))
        .await
        .unwrap()
        .into_inner()
        .lockout
        .unwrap();
    assert_eq!(preview.total_callers, 2);
    let callers: Vec<(&str, u64)> = preview
        .callers
        .iter()
        .map(|c| (c.client_ip.as_str(), c.requests))
        .collect();
    assert_eq!(callers, [("198.51.100.7", 2), ("203.0.113.9", 2)]);
    let since = time::from_timestamp(&preview.since.unwrap()).unwrap();
    assert!(since <= now - Duration::from_secs(24 * 3600) + Duration::from_secs(60));

    // Acknowledged: stored, and the preview says whom it blocks.
    let stored = admin
        .set_api_key_allowlist(set(ack()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.lockout.unwrap().total_callers, 2);
    assert_eq!(stored.key.unwrap().allowlist.unwrap().entries.len(), 1);
    // Widening or report-only blocks nobody new.
    let wider = admin
        .add_api_key_allowlist_entries(AddApiKeyAllowlistEntriesRequest {
            id: id.clone(),
            entries: vec![entry("198.51.100.0/24", "")],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(wider.lockout.unwrap().total_callers, 0);
    // Removing the entry that lets the busiest through is a risk again.
    let narrower = admin
        .remove_api_key_allowlist_entries(RemoveApiKeyAllowlistEntriesRequest {
            id: id.clone(),
            cidrs: vec!["198.51.100.0/24".into()],
            ..Default::default()
        })
        .await;
    assert_eq!(code(narrower), Code::FailedPrecondition);

    // The API's list looks at every request to the API in the tenant.
    let api = admin
        .set_api_allowlist(SetApiAllowlistRequest {
            slug: "orders".into(),
            allowlist: list(&["203.0.113.0/24"], false),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let info = api.get_error_details().error_info().cloned().unwrap();
    assert_eq!(info.metadata["addresses"], "198.51.100.7,192.0.2.3");
    let report_only = admin
        .set_api_allowlist(SetApiAllowlistRequest {
            slug: "orders".into(),
            allowlist: list(&["203.0.113.0/24"], true),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report_only.lockout.unwrap().total_callers, 0);
    server.shutdown().await.unwrap();
}

/// Two editors with the same etag: exactly one wins, the other is ABORTED,
/// and the audit log shows one change.
async fn concurrent_editors_one_wins(db: Db) {
    let server = db.start().await;
    let mut admin = admin(server.addr).await;
    let id = orders(&mut admin).await;
    let etag = admin
        .get_api_key(GetApiKeyRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner()
        .etag;
    let write = |cidr: &str| {
        let mut admin = admin.clone();
        let req = SetApiKeyAllowlistRequest {
            wait_for_propagation: None,
            id: id.clone(),
            allowlist: list(&[cidr], false),
            etag: etag.clone(),
            options: None,
        };
        async move { code(admin.set_api_key_allowlist(req).await) }
    };
    for round in 0..5 {
        let (a, b) = tokio::join!(
            write(&format!("203.0.113.{round}")),
            write(&format!("198.51.100.{round}"))
        );
        let mut codes = [a, b];
        codes.sort_by_key(|c| *c as i32);
        if round == 0 {
            assert_eq!(codes, [Code::Ok, Code::Aborted]);
        } else {
            // Later rounds reuse the first etag: both are stale.
            assert_eq!(codes, [Code::Aborted, Code::Aborted]);
        }
    }
    let changes = admin
        .list_audit_events(ListAuditEventsRequest {
            object_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events
        .into_iter()
        .filter(|e| e.action == "api_key.allowlist.set")
        .count();
    assert_eq!(changes, 1);
    server.shutdown().await.unwrap();
}

/// Expired entries are removed from the store by the sweep: a write by
/// `system`, audited, with a delta for enforcers.
async fn expired_entries_are_swept(db: Db) {
    let server = db.start().await;
    let mut admin = admin(server.addr).await;
    let id = orders(&mut admin).await;
    let soon = SystemTime::now() + Duration::from_secs(3600);
    let temporary = AllowlistEntry {
        expires_at: Some(time::to_timestamp(soon)),
        ..entry("192.0.2.1", "contractor")
    };
    admin
        .add_api_key_allowlist_entries(AddApiKeyAllowlistEntriesRequest {
            id: id.clone(),
            entries: vec![entry("203.0.113.5", "shop"), temporary.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .add_api_allowlist_entries(AddApiAllowlistEntriesRequest {
            slug: "orders".into(),
            entries: vec![entry("203.0.113.0/24", "office"), temporary],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut enforcer = Enforcer::start(server.addr, "e1", 0).await;
    let (at, _, _) = enforcer.full_snapshot().await;

    let store = Store::open(db.url()).await.unwrap();
    assert_eq!(
        store
            .remove_expired_entries(SystemTime::now())
            .await
            .unwrap(),
        0
    );
    let after_expiry = soon + Duration::from_secs(1);
    assert_eq!(store.remove_expired_entries(after_expiry).await.unwrap(), 2);
    assert_eq!(store.remove_expired_entries(after_expiry).await.unwrap(), 0);
    store.close().await;

    assert_eq!(
        key_cidrs(&mut admin, &id).await,
        [("203.0.113.5/32".to_owned(), "shop".to_owned())]
    );
    let api = admin
        .get_api(GetApiRequest {
            slug: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(api.allowlist.unwrap().entries.len(), 1);
    // Enforcers get both removals as deltas.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let delta = enforcer.full_delta(PATIENCE).await;
        assert!(delta.revision > at);
        seen.extend(delta.changes.into_iter().filter_map(|c| c.kind));
    }
    assert!(seen.iter().any(
        |c| matches!(c, ChangeKind::PutApi(a) if a.allowlist.as_ref().unwrap().entries.len() == 1)
    ));
    assert!(seen.iter().any(
        |c| matches!(c, ChangeKind::PutKey(k) if k.allowlist.as_ref().unwrap().entries.len() == 1)
    ));
    let events = admin
        .list_audit_events(ListAuditEventsRequest {
            actor_token_id: "system".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    // (The bootstrap tokens were made by `system` too.)
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "api_key.allowlist.remove",
            "api.allowlist.remove",
            "token.create",
            "token.create"
        ]
    );
    assert!(events[0].before_json.contains("192.0.2.1/32"));
    assert!(!events[0].after_json.contains("192.0.2.1/32"));
    let _ = OWNER;
    server.shutdown().await.unwrap();
}

on_both_backends!(
    entries_are_added_removed_and_updated,
    validate_only_stores_nothing,
    lockout_needs_acknowledging,
    concurrent_editors_one_wins,
    expired_entries_are_swept,
);
