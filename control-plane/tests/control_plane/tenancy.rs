//! Tenants and tokens: who may call what, tenant isolation on every RPC,
//! and enforcers that see only their tenant's configuration.

use std::time::{Duration, SystemTime};

use ipgate_shared::{
    proto::{
        admin::v1::{
            AddApiAllowlistEntriesRequest, AddApiKeyAllowlistEntriesRequest, Allowlist,
            AllowlistEntry, CreateApiKeyRequest, CreateApiRequest, CreateTenantRequest,
            CreateTokenRequest, DeleteApiRequest, GetApiKeyRequest, GetApiRequest,
            GetRevisionStatusRequest, ListApiKeysRequest, ListApisRequest, ListAuditEventsRequest,
            ListTenantsRequest, ListTokensRequest, QueryUsageLogsRequest,
            RemoveApiAllowlistEntriesRequest, RemoveApiKeyAllowlistEntriesRequest,
            RevokeApiKeyRequest, RevokeTokenRequest, RotateApiKeyRequest, SetApiAllowlistRequest,
            SetApiKeyAllowlistRequest, TestAccessRequest, TokenRole,
            UpdateApiAllowlistEntryRequest, UpdateApiKeyAllowlistEntryRequest, UpdateApiKeyRequest,
            UpdateApiRequest,
        },
        sync::v1::{ReportEventsRequest, UsageEvent},
    },
    time,
};
use tonic::Code;

use crate::{
    common::{
        Admin, Db, ENFORCER, OWNER, admin, admin_with, code, new_tenant, new_token, sync_with,
    },
    on_both_backends,
    sync::{Enforcer, PATIENCE},
};

fn entries(cidrs: &[&str]) -> Vec<AllowlistEntry> {
    cidrs
        .iter()
        .map(|c| AllowlistEntry {
            cidr: (*c).to_owned(),
            ..Default::default()
        })
        .collect()
}

fn list(cidrs: &[&str]) -> Option<Allowlist> {
    Some(Allowlist {
        entries: entries(cidrs),
        report_only: false,
    })
}

/// Tenant A's objects: the API `orders` with an allowlist, and a key with one.
async fn tenant_a(admin: &mut Admin) -> String {
    admin
        .create_api(CreateApiRequest {
            slug: "orders".into(),
            ..Default::default()
        })
        .await
        .expect("create API");
    admin
        .set_api_allowlist(SetApiAllowlistRequest {
            slug: "orders".into(),
            allowlist: list(&["203.0.113.0/24"]),
            ..Default::default()
        })
        .await
        .expect("API allowlist");
    admin
        .create_api_key(CreateApiKeyRequest {
            api: "orders".into(),
            name: "a key".into(),
            allowlist: list(&["203.0.113.5"]),
            ..Default::default()
        })
        .await
        .expect("create key")
        .into_inner()
        .key
        .expect("key")
        .id
}

async fn tenants_and_tokens(db: Db) {
    let server = db.start().await;
    let mut root = admin(server.addr).await;

    // A dry run creates nothing and shows no secret.
    let dry = root
        .create_tenant(CreateTenantRequest {
            id: "acme".into(),
            validate_only: true,
            ..Default::default()
        })
        .await
        .expect("dry run")
        .into_inner();
    assert!(dry.owner_secret.is_empty());
    assert_eq!(dry.tenant.unwrap().name, "acme");
    let tenants = |root: &mut Admin| {
        let mut root = root.clone();
        async move {
            let list = root.list_tenants(ListTenantsRequest {}).await.unwrap();
            list.into_inner()
                .tenants
                .into_iter()
                .map(|t| t.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(tenants(&mut root).await, ["default"]);
    // The default tenant was made with the database, not at the epoch.
    let default = root.list_tenants(ListTenantsRequest {}).await.unwrap();
    let created = default.into_inner().tenants[0]
        .created_at
        .expect("created_at");
    let made = ipgate_shared::time::from_timestamp(&created).expect("an instant");
    let age = std::time::SystemTime::now()
        .duration_since(made)
        .expect("made in the past");
    assert!(
        age < std::time::Duration::from_secs(600),
        "made {age:?} ago"
    );

    let secret = new_tenant(server.addr, "acme").await;
    assert!(secret.starts_with("ipg_admin_"));
    assert_eq!(tenants(&mut root).await, ["acme", "default"]);
    let again = root
        .create_tenant(CreateTenantRequest {
            id: "acme".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(again), Code::AlreadyExists);
    let bad = root
        .create_tenant(CreateTenantRequest {
            id: "Not OK".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(bad), Code::InvalidArgument);

    // Only the default tenant's owners manage tenants.
    let mut acme = admin_with(server.addr, Some(&secret)).await;
    assert_eq!(
        code(acme.list_tenants(ListTenantsRequest {}).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            acme.create_tenant(CreateTenantRequest {
                id: "other".into(),
                ..Default::default()
            })
            .await
        ),
        Code::PermissionDenied
    );

    // Owners make tokens of every role; the secret works, only once shown.
    let viewer = new_token(&mut acme, TokenRole::Viewer).await;
    let editor = new_token(&mut acme, TokenRole::Editor).await;
    let second_owner = new_token(&mut acme, TokenRole::Owner).await;
    let enforcer = new_token(&mut acme, TokenRole::Enforcer).await;
    assert!(enforcer.starts_with("ipg_enf_"));
    let tokens = acme
        .list_tokens(ListTokensRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tokens;
    assert_eq!(tokens.len(), 5);
    let first_owner = tokens[0].clone();
    assert!(first_owner.id.starts_with("tok_"));
    assert!(tokens.iter().all(|t| t.tenant == "acme"));
    assert!(tokens[1..].iter().all(|t| t.created_by == first_owner.id));
    let mut as_viewer = admin_with(server.addr, Some(&viewer)).await;
    let mut as_editor = admin_with(server.addr, Some(&editor)).await;
    for client in [&mut as_viewer, &mut as_editor] {
        let made = client
            .create_token(CreateTokenRequest {
                name: "x".into(),
                role: TokenRole::Viewer.into(),
                validate_only: false,
            })
            .await;
        assert_eq!(code(made), Code::PermissionDenied);
        assert_eq!(
            code(client.list_tokens(ListTokensRequest::default()).await),
            Code::PermissionDenied
        );
    }
    assert_eq!(
        code(as_viewer.list_apis(ListApisRequest::default()).await),
        Code::Ok
    );
    let no_role = acme
        .create_token(CreateTokenRequest {
            name: "x".into(),
            role: TokenRole::Unspecified.into(),
            validate_only: false,
        })
        .await;
    assert_eq!(code(no_role), Code::InvalidArgument);

    // Revocation works at once, once.
    let viewer_id = tokens
        .iter()
        .find(|t| t.role == TokenRole::Viewer as i32)
        .unwrap()
        .id
        .clone();
    let revoke = |id: &str| RevokeTokenRequest {
        id: id.into(),
        validate_only: false,
    };
    let dry = acme
        .revoke_token(RevokeTokenRequest {
            id: viewer_id.clone(),
            validate_only: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(dry.revoked_at.is_some());
    assert_eq!(
        code(as_viewer.list_apis(ListApisRequest::default()).await),
        Code::Ok
    );
    acme.revoke_token(revoke(&viewer_id)).await.expect("revoke");
    assert_eq!(
        code(as_viewer.list_apis(ListApisRequest::default()).await),
        Code::Unauthenticated
    );
    assert_eq!(
        code(acme.revoke_token(revoke(&viewer_id)).await),
        Code::FailedPrecondition
    );
    assert_eq!(
        code(acme.revoke_token(revoke("tok_doesnotexist00")).await),
        Code::NotFound
    );
    let all = acme
        .list_tokens(ListTokensRequest {
            include_revoked: true,
        })
        .await
        .unwrap()
        .into_inner()
        .tokens;
    assert_eq!(all.len(), 5);
    assert!(
        all.iter()
            .any(|t| t.id == viewer_id && t.revoked_at.is_some())
    );

    // Never the last owner: revoke the first with the second, then the
    // second (now the last) is refused.
    let mut as_second = admin_with(server.addr, Some(&second_owner)).await;
    as_second
        .revoke_token(revoke(&first_owner.id))
        .await
        .expect("another owner remains");
    let second_id = all
        .iter()
        .filter(|t| t.role == TokenRole::Owner as i32)
        .map(|t| t.id.clone())
        .find(|id| *id != first_owner.id)
        .unwrap();
    let last = as_second
        .revoke_token(revoke(&second_id))
        .await
        .unwrap_err();
    assert_eq!(last.code(), Code::FailedPrecondition, "{last:?}");
    assert!(last.message().contains("last active owner"), "{last:?}");

    // Audited, by token id, without secrets.
    let events = as_second
        .list_audit_events(ListAuditEventsRequest {
            object_type: "token".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "token.revoke",
            "token.revoke",
            "token.create",
            "token.create",
            "token.create",
            "token.create",
            "token.create"
        ]
    );
    assert_eq!(events[1].actor_token_id, first_owner.id);
    for event in &events {
        for secret in [&secret, &viewer, &editor, &second_owner, &enforcer] {
            assert!(!event.after_json.contains(secret.as_str()));
        }
        // A revocation commits a revision, so sync sessions of the token
        // end before anything after it is sent; a creation does not.
        assert_eq!(
            event.revision > 0,
            event.action == "token.revoke",
            "{event:?}"
        );
    }

    // Bootstrap tokens have ids too.
    let bootstrap = root
        .list_tokens(ListTokensRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tokens;
    assert_eq!(bootstrap.len(), 2);
    assert!(
        bootstrap
            .iter()
            .all(|t| t.id.starts_with("tok_") && t.created_by.is_empty())
    );
    server.shutdown().await.unwrap();
}

/// Tenant B's owner tries every RPC on tenant A's objects: NOT_FOUND each
/// time, and lists show none of them.
async fn another_tenants_objects_are_not_found(db: Db) {
    let server = db.start().await;
    let mut a = admin(server.addr).await;
    let key = tenant_a(&mut a).await;
    let a_token = a
        .list_tokens(ListTokensRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tokens[0]
        .id
        .clone();
    let mut reporter = sync_with(server.addr, Some(ENFORCER)).await;
    reporter
        .report_events(ReportEventsRequest {
            batch_id: uuid::Uuid::new_v4().to_string(),
            enforcer_id: "e1".into(),
            events: vec![UsageEvent {
                request_id: "r1".into(),
                time: Some(time::to_timestamp(SystemTime::now())),
                api: "orders".into(),
                api_key_id: key.clone(),
                method: "GET".into(),
                path: "/".into(),
                status_code: 200,
                client_ip: "203.0.113.5".into(),
                reason: "ALLOWED".into(),
                matched_label: String::new(),
                door: ipgate_shared::proto::sync::v1::Door::Check.into(),
                client_ip_source: ipgate_shared::proto::sync::v1::ClientIpSource::Named.into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap();

    let secret = new_tenant(server.addr, "beta").await;
    let mut b = admin_with(server.addr, Some(&secret)).await;
    let slug = || "orders".to_owned();
    let id = || key.clone();
    let checks: Vec<(&str, Code)> = vec![
        (
            "GetApi",
            code(b.get_api(GetApiRequest { slug: slug() }).await),
        ),
        (
            "UpdateApi",
            code(
                b.update_api(UpdateApiRequest {
                    slug: slug(),
                    name: Some("mine".into()),
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            "DeleteApi",
            code(
                b.delete_api(DeleteApiRequest {
                    slug: slug(),
                    force: true,
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            "SetApiAllowlist",
            code(
                b.set_api_allowlist(SetApiAllowlistRequest {
                    slug: slug(),
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            "AddApiAllowlistEntries",
            code(
                b.add_api_allowlist_entries(AddApiAllowlistEntriesRequest {
                    slug: slug(),
                    entries: entries(&["198.51.100.1"]),
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            "RemoveApiAllowlistEntries",
            code(
                b.remove_api_allowlist_entries(RemoveApiAllowlistEntriesRequest {
                    slug: slug(),
                    cidrs: vec!["203.0.113.0/24".into()],
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            "UpdateApiAllowlistEntry",
            code(
                b.update_api_allowlist_entry(UpdateApiAllowlistEntryRequest {
                    slug: slug(),
                    cidr: "203.0.113.0/24".into(),
                    label: Some("x".into()),
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            "CreateApiKey",
            code(
                b.create_api_key(CreateApiKeyRequest {
                    api: slug(),
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            "GetApiKey",
            code(b.get_api_key(GetApiKeyRequest { id: id() }).await),
        ),
        (
            "UpdateApiKey",
            code(
                b.update_api_key(UpdateApiKeyRequest {
                    id: id(),
                    name: Some("mine".into()),
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            "RevokeApiKey",
            code(
                b.revoke_api_key(RevokeApiKeyRequest {
                    id: id(),
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            "RotateApiKey",
            code(
                b.rotate_api_key(RotateApiKeyRequest {
                    id: id(),
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            "SetApiKeyAllowlist",
            code(
                b.set_api_key_allowlist(SetApiKeyAllowlistRequest {
                    id: id(),
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            "AddApiKeyAllowlistEntries",
            code(
                b.add_api_key_allowlist_entries(AddApiKeyAllowlistEntriesRequest {
                    id: id(),
                    entries: entries(&["198.51.100.1"]),
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            "RemoveApiKeyAllowlistEntries",
            code(
                b.remove_api_key_allowlist_entries(RemoveApiKeyAllowlistEntriesRequest {
                    id: id(),
                    cidrs: vec!["203.0.113.5".into()],
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            "UpdateApiKeyAllowlistEntry",
            code(
                b.update_api_key_allowlist_entry(UpdateApiKeyAllowlistEntryRequest {
                    id: id(),
                    cidr: "203.0.113.5".into(),
                    label: Some("x".into()),
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            "TestAccess",
            code(
                b.test_access(TestAccessRequest {
                    api: slug(),
                    client_ip: "203.0.113.5".into(),
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            "TestAccess (key)",
            code(
                b.test_access(TestAccessRequest {
                    api: "billing".into(),
                    api_key_id: id(),
                    client_ip: "203.0.113.5".into(),
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            "RevokeToken",
            code(
                b.revoke_token(RevokeTokenRequest {
                    id: a_token.clone(),
                    validate_only: false,
                })
                .await,
            ),
        ),
    ];
    for (rpc, got) in checks {
        assert_eq!(got, Code::NotFound, "{rpc}");
    }

    // Lists show nothing of A.
    let apis = b.list_apis(ListApisRequest::default()).await.unwrap();
    assert!(apis.into_inner().apis.is_empty());
    let keys = b
        .list_api_keys(ListApiKeysRequest::default())
        .await
        .unwrap();
    assert!(keys.into_inner().keys.is_empty());
    let usage = b
        .query_usage_logs(QueryUsageLogsRequest::default())
        .await
        .unwrap();
    assert!(usage.into_inner().entries.is_empty());
    let audit = b
        .list_audit_events(ListAuditEventsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .events;
    assert!(audit.iter().all(|e| e.object_type == "token"), "{audit:?}");
    let tokens = b.list_tokens(ListTokensRequest::default()).await.unwrap();
    assert!(
        tokens
            .into_inner()
            .tokens
            .iter()
            .all(|t| t.tenant == "beta")
    );
    let status = b
        .get_revision_status(GetRevisionStatusRequest { revision: 0 })
        .await
        .unwrap()
        .into_inner();
    assert!(status.enforcers.is_empty());

    // Nothing of A changed.
    let api = a
        .get_api(GetApiRequest { slug: slug() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(api.allowlist.unwrap().entries.len(), 1);
    assert_eq!(api.name, "orders");

    // Slugs are global (enforcers know APIs by slug): taken is taken.
    let taken = b
        .create_api(CreateApiRequest {
            slug: slug(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(taken), Code::AlreadyExists);
    server.shutdown().await.unwrap();
}

/// A viewer's writes are refused, and so are an enforcer token's admin calls.
async fn viewers_and_enforcers_may_not_write(db: Db) {
    let server = db.start().await;
    let mut a = admin(server.addr).await;
    let key = tenant_a(&mut a).await;
    let viewer = new_token(&mut a, TokenRole::Viewer).await;
    for token in [viewer.as_str(), ENFORCER] {
        let mut c = admin_with(server.addr, Some(token)).await;
        let slug = || "orders".to_owned();
        let id = || key.clone();
        let codes = [
            code(
                c.create_api(CreateApiRequest {
                    slug: "new".into(),
                    ..Default::default()
                })
                .await,
            ),
            code(
                c.update_api(UpdateApiRequest {
                    slug: slug(),
                    ..Default::default()
                })
                .await,
            ),
            code(
                c.delete_api(DeleteApiRequest {
                    slug: slug(),
                    ..Default::default()
                })
                .await,
            ),
            code(
                c.set_api_allowlist(SetApiAllowlistRequest {
                    slug: slug(),
                    ..Default::default()
                })
                .await,
            ),
            code(
                c.add_api_allowlist_entries(AddApiAllowlistEntriesRequest {
                    slug: slug(),
                    entries: entries(&["198.51.100.1"]),
                    ..Default::default()
                })
                .await,
            ),
            code(
                c.remove_api_allowlist_entries(RemoveApiAllowlistEntriesRequest {
                    slug: slug(),
                    cidrs: vec!["203.0.113.0/24".into()],
                    ..Default::default()
                })
                .await,
            ),
            code(
                c.update_api_allowlist_entry(UpdateApiAllowlistEntryRequest {
                    slug: slug(),
                    cidr: "203.0.113.0/24".into(),
                    ..Default::default()
                })
                .await,
            ),
            code(
                c.create_api_key(CreateApiKeyRequest {
                    api: slug(),
                    ..Default::default()
                })
                .await,
            ),
            code(
                c.update_api_key(UpdateApiKeyRequest {
                    id: id(),
                    ..Default::default()
                })
                .await,
            ),
            code(
                c.revoke_api_key(RevokeApiKeyRequest {
                    id: id(),
                    ..Default::default()
                })
                .await,
            ),
            code(
                c.rotate_api_key(RotateApiKeyRequest {
                    id: id(),
                    ..Default::default()
                })
                .await,
            ),
            code(
                c.set_api_key_allowlist(SetApiKeyAllowlistRequest {
                    id: id(),
                    ..Default::default()
                })
                .await,
            ),
            code(
                c.add_api_key_allowlist_entries(AddApiKeyAllowlistEntriesRequest {
                    id: id(),
                    entries: entries(&["198.51.100.1"]),
                    ..Default::default()
                })
                .await,
            ),
            code(
                c.remove_api_key_allowlist_entries(RemoveApiKeyAllowlistEntriesRequest {
                    id: id(),
                    cidrs: vec!["203.0.113.5".into()],
                    ..Default::default()
                })
                .await,
            ),
            code(
                c.update_api_key_allowlist_entry(UpdateApiKeyAllowlistEntryRequest {
                    id: id(),
                    cidr: "203.0.113.5".into(),
                    ..Default::default()
                })
                .await,
            ),
            code(
                c.create_token(CreateTokenRequest {
                    name: "x".into(),
                    role: TokenRole::Viewer.into(),
                    validate_only: false,
                })
                .await,
            ),
            code(
                c.revoke_token(RevokeTokenRequest {
                    id: "tok_x".into(),
                    validate_only: false,
                })
                .await,
            ),
            code(
                c.create_tenant(CreateTenantRequest {
                    id: "x".into(),
                    ..Default::default()
                })
                .await,
            ),
        ];
        for (i, got) in codes.into_iter().enumerate() {
            assert_eq!(got, Code::PermissionDenied, "write #{i} with {token:.12}");
        }
    }
    // Reads: fine for the viewer, refused to the enforcer.
    let mut viewer = admin_with(server.addr, Some(&viewer)).await;
    assert_eq!(
        code(
            viewer
                .get_api_key(GetApiKeyRequest { id: key.clone() })
                .await
        ),
        Code::Ok
    );
    let mut enforcer = admin_with(server.addr, Some(ENFORCER)).await;
    assert_eq!(
        code(enforcer.list_apis(ListApisRequest::default()).await),
        Code::PermissionDenied
    );
    // Nothing changed.
    let api = a
        .get_api(GetApiRequest {
            slug: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(api.revision, 2);
    server.shutdown().await.unwrap();
}

/// An enforcer syncs only its tenant's APIs and keys; revisions of other
/// tenants reach it as empty deltas, so it sees no gap and nothing of theirs.
async fn enforcers_see_only_their_tenant(db: Db) {
    let server = db.start().await;
    let mut a = admin(server.addr).await;
    let a_key = tenant_a(&mut a).await;
    let secret = new_tenant(server.addr, "beta").await;
    let mut b = admin_with(server.addr, Some(&secret)).await;
    let b_enforcer_token = new_token(&mut b, TokenRole::Enforcer).await;
    b.create_api(CreateApiRequest {
        slug: "billing".into(),
        ..Default::default()
    })
    .await
    .unwrap();

    let mut a_enforcer = Enforcer::start(server.addr, "edge-1", 0).await;
    let mut b_enforcer = Enforcer::start_as(server.addr, &b_enforcer_token, "edge-1", 0).await;
    let (rev_a, apis_a, keys_a) = a_enforcer.full_snapshot().await;
    let (rev_b, apis_b, keys_b) = b_enforcer.full_snapshot().await;
    assert_eq!((rev_a, rev_b), (4, 4));
    assert_eq!(
        apis_a.iter().map(|a| a.slug.as_str()).collect::<Vec<_>>(),
        ["orders"]
    );
    assert_eq!(keys_a.len(), 1);
    assert_eq!(keys_a[0].id, a_key);
    assert_eq!(
        apis_b.iter().map(|a| a.slug.as_str()).collect::<Vec<_>>(),
        ["billing"]
    );
    assert!(keys_b.is_empty());

    // A's write: A's enforcer gets it, B's an empty delta of the same revision.
    a.add_api_allowlist_entries(AddApiAllowlistEntriesRequest {
        slug: "orders".into(),
        entries: entries(&["198.51.100.0/24"]),
        ..Default::default()
    })
    .await
    .unwrap();
    let to_a = a_enforcer.full_delta(PATIENCE).await;
    let to_b = b_enforcer.full_delta(PATIENCE).await;
    assert_eq!((to_a.revision, to_b.revision), (5, 5));
    assert_eq!(to_a.changes.len(), 1);
    assert!(to_b.changes.is_empty());
    // And the other way round.
    b.update_api(UpdateApiRequest {
        slug: "billing".into(),
        name: Some("Billing".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let to_a = a_enforcer.full_delta(PATIENCE).await;
    let to_b = b_enforcer.full_delta(PATIENCE).await;
    assert_eq!((to_a.revision, to_b.revision), (6, 6));
    assert!(to_a.changes.is_empty());
    assert_eq!(to_b.changes.len(), 1);

    // Resuming from the change log filters the same way.
    let mut b_late = Enforcer::start_as(server.addr, &b_enforcer_token, "edge-2", 4).await;
    let first = b_late.full_delta(PATIENCE).await;
    assert_eq!((first.revision, first.changes.len()), (5, 0));
    assert_eq!(b_late.full_delta(PATIENCE).await.changes.len(), 1);

    // Each tenant's revision status lists its own enforcers only.
    a_enforcer.ack(6).await;
    let status = |mut c: Admin| async move {
        c.get_revision_status(GetRevisionStatusRequest { revision: 0 })
            .await
            .unwrap()
            .into_inner()
    };
    let a_status = crate::common::eventually(Duration::from_secs(5), "A's ack", || {
        let a = a.clone();
        async move {
            let s = status(a).await;
            (s.enforcers_acked == 1).then_some(s)
        }
    })
    .await;
    assert_eq!(a_status.enforcers.len(), 1);
    let b_status = status(b.clone()).await;
    assert_eq!(b_status.enforcers_connected, 2);
    assert_eq!(b_status.enforcers_acked, 0);

    // Usage events are stored under the reporting enforcer's tenant.
    let mut b_reporter = sync_with(server.addr, Some(&b_enforcer_token)).await;
    b_reporter
        .report_events(ReportEventsRequest {
            batch_id: uuid::Uuid::new_v4().to_string(),
            enforcer_id: "edge-1".into(),
            events: vec![UsageEvent {
                request_id: "b1".into(),
                time: Some(time::to_timestamp(SystemTime::now())),
                api: "billing".into(),
                method: "GET".into(),
                path: "/".into(),
                status_code: 200,
                client_ip: "198.51.100.9".into(),
                reason: "ALLOWED".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    let seen = |mut c: Admin| async move {
        c.query_usage_logs(QueryUsageLogsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .entries
            .len()
    };
    assert_eq!(seen(b.clone()).await, 1);
    assert_eq!(seen(a.clone()).await, 0);

    // A revoked enforcer token stops working at once for reports, and ends
    // its open sessions at their next idle check.
    let b_enforcer_id = b
        .list_tokens(ListTokensRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tokens
        .into_iter()
        .find(|t| t.role == TokenRole::Enforcer as i32)
        .unwrap()
        .id;
    b.revoke_token(RevokeTokenRequest {
        id: b_enforcer_id,
        validate_only: false,
    })
    .await
    .unwrap();
    let refused = b_reporter
        .report_events(ReportEventsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let ended = loop {
        match b_enforcer.next_within(PATIENCE).await {
            Ok(_) => continue,
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    let _ = OWNER;
    server.shutdown().await.unwrap();
}

on_both_backends!(
    tenants_and_tokens,
    another_tenants_objects_are_not_found,
    viewers_and_enforcers_may_not_write,
    enforcers_see_only_their_tenant,
);
