//! Tenants and roles at the door of every admin RPC, on SQLite and
//! PostgreSQL: tenant B's owner calling each RPC on tenant A's objects gets
//! `NOT_FOUND` (lists simply leave A's objects out), a viewer's writes get
//! `PERMISSION_DENIED`, no token or a bad or revoked one gets
//! `UNAUTHENTICATED`, and an enforcer token gets `PERMISSION_DENIED` on
//! every admin RPC. An enforcer of tenant B never decides on A's API.

use std::time::{Duration, SystemTime};

use ipgate_shared::proto::admin::v1::{
    AddApiAllowlistEntriesRequest, AddApiKeyAllowlistEntriesRequest, ApiStatus,
    CreateApiKeyRequest, CreateApiRequest, CreateTenantRequest, CreateTokenRequest,
    DeleteApiRequest, ExportUsageLogsRequest, GetApiKeyRequest, GetApiRequest,
    GetRevisionStatusRequest, ListApiKeysRequest, ListApisRequest, ListAuditEventsRequest,
    ListTenantsRequest, ListTokensRequest, QueryUsageLogsRequest, RemoveApiAllowlistEntriesRequest,
    RemoveApiKeyAllowlistEntriesRequest, RevokeApiKeyRequest, RevokeTokenRequest,
    RotateApiKeyRequest, Scopes, SetApiAllowlistRequest, SetApiKeyAllowlistRequest,
    TestAccessRequest, TokenRole, UpdateApiAllowlistEntryRequest,
    UpdateApiKeyAllowlistEntryRequest, UpdateApiKeyRequest, UpdateApiRequest,
};
use ipgate_tests::{
    Backend, ControlPlane, ENFORCER_TOKEN, Enforcer,
    admin::{entries, entry, export_csv, ip},
    events::{self, event},
    eventually, http,
    process::AdminClient,
    upstream,
};
use tonic::{Code, Status};

/// What a call needs, to say which callers it must turn away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Needs {
    /// Any admin role.
    Read,
    /// Editor or owner.
    Write,
    /// Owner (tokens, listing them too).
    Owner,
    /// Owner of the default tenant (tenants).
    Operator,
}

/// One RPC's answer to a caller.
struct Outcome {
    rpc: &'static str,
    needs: Needs,
    /// Whether the request names one of tenant A's objects.
    names_a: bool,
    result: Result<(), Status>,
}

/// Tenant A's objects, which other callers try to reach.
struct TenantA {
    api: String,
    key_id: String,
    /// A viewer token of A: its id and secret.
    viewer_id: String,
    viewer: String,
}

/// Calls every admin RPC once, naming A's objects wherever the request
/// names an object. Writes are real (not dry runs): none may succeed.
async fn call_every_rpc(admin: &mut AdminClient, a: &TenantA) -> Vec<Outcome> {
    let mut out = Vec::new();
    macro_rules! call {
        ($rpc:literal, $needs:ident, $names_a:literal, $call:expr) => {
            out.push(Outcome {
                rpc: $rpc,
                needs: Needs::$needs,
                names_a: $names_a,
                result: $call.await.map(|_| ()),
            })
        };
    }
    let api = || a.api.clone();
    let key = || a.key_id.clone();

    call!(
        "CreateTenant",
        Operator,
        false,
        admin.create_tenant(CreateTenantRequest {
            id: "intruder".into(),
            name: "Intruder".into(),
            ..Default::default()
        })
    );
    call!(
        "ListTenants",
        Operator,
        false,
        admin.list_tenants(ListTenantsRequest {})
    );
    call!(
        "CreateToken",
        Owner,
        false,
        admin.create_token(CreateTokenRequest {
            name: "intruder".into(),
            role: TokenRole::Owner.into(),
            ..Default::default()
        })
    );
    call!(
        "ListTokens",
        Owner,
        false,
        admin.list_tokens(ListTokensRequest::default())
    );
    call!(
        "RevokeToken",
        Owner,
        true,
        admin.revoke_token(RevokeTokenRequest {
            id: a.viewer_id.clone(),
            ..Default::default()
        })
    );
    call!(
        "CreateApi",
        Write,
        false,
        admin.create_api(CreateApiRequest {
            slug: "intruder".into(),
            name: "Intruder".into(),
            ..Default::default()
        })
    );
    call!(
        "GetApi",
        Read,
        true,
        admin.get_api(GetApiRequest { slug: api() })
    );
    call!(
        "ListApis",
        Read,
        false,
        admin.list_apis(ListApisRequest::default())
    );
    call!(
        "UpdateApi",
        Write,
        true,
        admin.update_api(UpdateApiRequest {
            slug: api(),
            status: ApiStatus::Disabled.into(),
            ..Default::default()
        })
    );
    call!(
        "SetApiAllowlist",
        Write,
        true,
        admin.set_api_allowlist(SetApiAllowlistRequest {
            slug: api(),
            allowlist: entries(&["203.0.113.66"]),
            ..Default::default()
        })
    );
    call!(
        "AddApiAllowlistEntries",
        Write,
        true,
        admin.add_api_allowlist_entries(AddApiAllowlistEntriesRequest {
            slug: api(),
            entries: vec![entry("203.0.113.66", "intruder")],
            ..Default::default()
        })
    );
    call!(
        "UpdateApiAllowlistEntry",
        Write,
        true,
        admin.update_api_allowlist_entry(UpdateApiAllowlistEntryRequest {
            slug: api(),
            cidr: "198.51.100.0/24".into(),
            label: Some("intruder".into()),
            ..Default::default()
        })
    );
    call!(
        "RemoveApiAllowlistEntries",
        Write,
        true,
        admin.remove_api_allowlist_entries(RemoveApiAllowlistEntriesRequest {
            slug: api(),
            cidrs: vec!["198.51.100.0/24".into()],
            ..Default::default()
        })
    );
    call!(
        "CreateApiKey",
        Write,
        true,
        admin.create_api_key(CreateApiKeyRequest {
            api: api(),
            name: "intruder".into(),
            ..Default::default()
        })
    );
    call!(
        "GetApiKey",
        Read,
        true,
        admin.get_api_key(GetApiKeyRequest { id: key() })
    );
    call!(
        "ListApiKeys",
        Read,
        false,
        admin.list_api_keys(ListApiKeysRequest::default())
    );
    call!(
        "UpdateApiKey",
        Write,
        true,
        admin.update_api_key(UpdateApiKeyRequest {
            id: key(),
            name: Some("intruder".into()),
            scopes: Some(Scopes {
                scopes: vec!["admin".into()],
            }),
            ..Default::default()
        })
    );
    call!(
        "RotateApiKey",
        Write,
        true,
        admin.rotate_api_key(RotateApiKeyRequest {
            id: key(),
            ..Default::default()
        })
    );
    call!(
        "SetApiKeyAllowlist",
        Write,
        true,
        admin.set_api_key_allowlist(SetApiKeyAllowlistRequest {
            id: key(),
            allowlist: entries(&["203.0.113.66"]),
            ..Default::default()
        })
    );
    call!(
        "AddApiKeyAllowlistEntries",
        Write,
        true,
        admin.add_api_key_allowlist_entries(AddApiKeyAllowlistEntriesRequest {
            id: key(),
            entries: vec![entry("203.0.113.66", "intruder")],
            ..Default::default()
        })
    );
    call!(
        "UpdateApiKeyAllowlistEntry",
        Write,
        true,
        admin.update_api_key_allowlist_entry(UpdateApiKeyAllowlistEntryRequest {
            id: key(),
            cidr: "198.51.100.7/32".into(),
            label: Some("intruder".into()),
            ..Default::default()
        })
    );
    call!(
        "RemoveApiKeyAllowlistEntries",
        Write,
        true,
        admin.remove_api_key_allowlist_entries(RemoveApiKeyAllowlistEntriesRequest {
            id: key(),
            cidrs: vec!["198.51.100.7".into()],
            ..Default::default()
        })
    );
    call!(
        "RevokeApiKey",
        Write,
        true,
        admin.revoke_api_key(RevokeApiKeyRequest {
            id: key(),
            ..Default::default()
        })
    );
    call!(
        "DeleteApi",
        Write,
        true,
        admin.delete_api(DeleteApiRequest {
            slug: api(),
            force: true,
            ..Default::default()
        })
    );
    call!(
        "TestAccess",
        Read,
        true,
        admin.test_access(TestAccessRequest {
            api: api(),
            api_key_id: key(),
            client_ip: "198.51.100.7".into(),
            ..Default::default()
        })
    );
    call!(
        "QueryUsageLogs",
        Read,
        false,
        admin.query_usage_logs(QueryUsageLogsRequest::default())
    );
    call!(
        "ExportUsageLogs",
        Read,
        false,
        export_csv(admin, ExportUsageLogsRequest::default())
    );
    call!(
        "ListAuditEvents",
        Read,
        false,
        admin.list_audit_events(ListAuditEventsRequest::default())
    );
    call!(
        "GetRevisionStatus",
        Read,
        false,
        admin.get_revision_status(GetRevisionStatusRequest::default())
    );
    assert_eq!(out.len(), 29, "one call per RPC of admin.proto");
    out
}

/// Asserts each outcome `expected` gives a code for has that code.
fn assert_outcomes(
    who: &str,
    outcomes: &[Outcome],
    expected: impl Fn(&Outcome) -> Option<Code>,
) -> usize {
    let mut wrong = Vec::new();
    let mut checked = 0;
    for o in outcomes {
        let Some(code) = expected(o) else { continue };
        checked += 1;
        match &o.result {
            Err(status) if status.code() == code => {}
            Err(status) => wrong.push(format!(
                "{}: expected {code:?}, got {:?} {:?}",
                o.rpc,
                status.code(),
                status.message()
            )),
            Ok(()) => wrong.push(format!("{}: expected {code:?}, got an answer", o.rpc)),
        }
    }
    assert!(wrong.is_empty(), "{who}:\n{}", wrong.join("\n"));
    checked
}

/// The default tenant (A) with an API, a key with a list, a viewer token,
/// usage events and an enforcer; tenant B with its owner and its own API.
async fn two_tenants(backend: Backend) {
    let cp = ControlPlane::start(&backend);
    let mut owner_a = cp.admin().await;
    owner_a
        .create_api(CreateApiRequest {
            slug: "orders".into(),
            name: "Orders".into(),
            ..Default::default()
        })
        .await
        .expect("A's API");
    owner_a
        .set_api_allowlist(SetApiAllowlistRequest {
            slug: "orders".into(),
            allowlist: entries(&["198.51.100.0/24", "127.0.0.0/24"]),
            ..Default::default()
        })
        .await
        .expect("A's API list");
    let created = owner_a
        .create_api_key(CreateApiKeyRequest {
            api: "orders".into(),
            name: "A's key".into(),
            allowlist: entries(&["198.51.100.7", "127.0.0.1"]),
            ..Default::default()
        })
        .await
        .expect("A's key")
        .into_inner();
    let viewer = owner_a
        .create_token(CreateTokenRequest {
            name: "A's viewer".into(),
            role: TokenRole::Viewer.into(),
            ..Default::default()
        })
        .await
        .expect("A's viewer token")
        .into_inner();
    let a = TenantA {
        api: "orders".into(),
        key_id: created.key.expect("key").id,
        viewer_id: viewer.token.expect("token").id,
        viewer: viewer.secret,
    };
    // Usage events of A's key, with a path no other tenant may ever see.
    let mut sync = cp.sync().await;
    let secret_path = "/tenant-a-only";
    events::report(
        &mut sync,
        vec![ipgate_shared::proto::sync::v1::UsageEvent {
            path: secret_path.into(),
            ..event("orders", &a.key_id, "198.51.100.7", SystemTime::now())
        }],
    )
    .await;
    // An enforcer of A, so A has something in the enforcer registry.
    let upstream = upstream::start().await;
    let enforcer_a = Enforcer::start(&cp, "orders", upstream);
    eventually(
        Duration::from_secs(10),
        "A's enforcer to let A's key through",
        || async {
            let res = http::get(
                ip("127.0.0.1"),
                enforcer_a.proxy_addr,
                "/",
                &[("x-api-key", &created.secret)],
            )
            .await;
            (res.status == 200).then_some(())
        },
    )
    .await;

    let tenant_b = owner_a
        .create_tenant(CreateTenantRequest {
            id: "tenant-b".into(),
            name: "Tenant B".into(),
            ..Default::default()
        })
        .await
        .expect("create tenant B")
        .into_inner();
    assert!(
        !tenant_b.owner_secret.is_empty(),
        "B's owner token is shown once"
    );
    let mut owner_b = cp.admin_with(&tenant_b.owner_secret).await;
    owner_b
        .create_api(CreateApiRequest {
            slug: "b-shop".into(),
            name: "B's shop".into(),
            ..Default::default()
        })
        .await
        .expect("B's own API");

    // Tenant B's owner: every call naming A's objects is NOT_FOUND.
    let outcomes = call_every_rpc(&mut owner_b, &a).await;
    let checked = assert_outcomes("tenant B's owner on A's objects", &outcomes, |o| {
        if o.names_a {
            Some(Code::NotFound)
        } else if o.needs == Needs::Operator {
            Some(Code::PermissionDenied)
        } else {
            None
        }
    });
    println!("tenant B's owner: {checked} calls refused as they should be");

    // Lists leave A's objects out, with or without a filter naming them.
    let apis = owner_b
        .list_apis(ListApisRequest::default())
        .await
        .expect("B lists its APIs")
        .into_inner()
        .apis;
    assert!(apis.iter().all(|api| api.slug != a.api), "{apis:?}");
    assert!(apis.iter().any(|api| api.slug == "b-shop"), "{apis:?}");
    let keys = owner_b
        .list_api_keys(ListApiKeysRequest::default())
        .await
        .expect("B lists its keys")
        .into_inner()
        .keys;
    assert!(
        keys.iter().all(|k| k.id != a.key_id && k.api != a.api),
        "{keys:?}"
    );
    empty_or_not_found(
        "ListApiKeys filtered to A's API",
        owner_b
            .list_api_keys(ListApiKeysRequest {
                api: a.api.clone(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().keys.len()),
    );
    let tokens = owner_b
        .list_tokens(ListTokensRequest {
            include_revoked: true,
        })
        .await
        .expect("B lists its tokens")
        .into_inner()
        .tokens;
    assert!(
        tokens
            .iter()
            .all(|t| t.tenant == "tenant-b" && t.id != a.viewer_id),
        "{tokens:?}"
    );
    let usage = owner_b
        .query_usage_logs(QueryUsageLogsRequest::default())
        .await
        .expect("B reads its usage log")
        .into_inner()
        .entries;
    assert!(usage.iter().all(|e| e.api != a.api), "{usage:?}");
    for (what, filter) in [
        (
            "QueryUsageLogs filtered to A's key",
            QueryUsageLogsRequest {
                api_key_id: a.key_id.clone(),
                ..Default::default()
            },
        ),
        (
            "QueryUsageLogs filtered to A's API",
            QueryUsageLogsRequest {
                api: a.api.clone(),
                ..Default::default()
            },
        ),
    ] {
        empty_or_not_found(
            what,
            owner_b
                .query_usage_logs(filter)
                .await
                .map(|r| r.into_inner().entries.len()),
        );
    }
    for filter in [
        ExportUsageLogsRequest::default(),
        ExportUsageLogsRequest {
            api_key_id: a.key_id.clone(),
            ..Default::default()
        },
    ] {
        match export_csv(&mut owner_b, filter).await {
            Ok(csv) => assert!(
                !csv.contains(secret_path) && !csv.contains(&a.key_id),
                "B's export shows A's usage:\n{csv}"
            ),
            Err(status) => assert_eq!(status.code(), Code::NotFound, "{status:?}"),
        }
    }
    let audit = owner_b
        .list_audit_events(ListAuditEventsRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("B reads its audit log")
        .into_inner()
        .events;
    for e in &audit {
        let text = format!("{} {} {}", e.object_id, e.before_json, e.after_json);
        assert!(
            !text.contains(&a.key_id) && !text.contains("\"orders\"") && e.object_id != a.api,
            "B's audit log shows A's object: {e:?}"
        );
    }
    for (what, filter) in [
        (
            "ListAuditEvents filtered to A's key",
            ListAuditEventsRequest {
                object_type: "api_key".into(),
                object_id: a.key_id.clone(),
                ..Default::default()
            },
        ),
        (
            "ListAuditEvents filtered to A's viewer token as actor",
            ListAuditEventsRequest {
                actor_token_id: a.viewer_id.clone(),
                ..Default::default()
            },
        ),
    ] {
        empty_or_not_found(
            what,
            owner_b
                .list_audit_events(filter)
                .await
                .map(|r| r.into_inner().events.len()),
        );
    }
    let status = owner_b
        .get_revision_status(GetRevisionStatusRequest::default())
        .await
        .expect("B reads revision status")
        .into_inner();
    assert!(
        status
            .enforcers
            .iter()
            .all(|e| e.enforcer_id != enforcer_a.id),
        "B sees A's enforcer: {status:?}"
    );
    assert_eq!(
        status.enforcers_connected as usize,
        status.enforcers.iter().filter(|e| e.connected).count(),
        "B's count of connected enforcers includes others: {status:?}"
    );
    // A key id of A, tested on B's own API, answers exactly like a key id
    // that never existed.
    let test_as = |key: &str| TestAccessRequest {
        api: "b-shop".into(),
        api_key_id: key.to_owned(),
        client_ip: "198.51.100.7".into(),
        ..Default::default()
    };
    let with_a_key = owner_b.test_access(test_as(&a.key_id)).await;
    let with_no_such_key = owner_b.test_access(test_as("0000000000000000")).await;
    match (&with_a_key, &with_no_such_key) {
        (Err(x), Err(y)) => assert_eq!(
            (x.code(), x.message().replace(&a.key_id, "0000000000000000")),
            (y.code(), y.message().to_owned())
        ),
        (Ok(x), Ok(y)) => assert_eq!(
            (
                x.get_ref().allowed,
                &x.get_ref().reason,
                x.get_ref().http_status
            ),
            (
                y.get_ref().allowed,
                &y.get_ref().reason,
                y.get_ref().http_status
            )
        ),
        _ => panic!("TestAccess tells A's key from no key: {with_a_key:?} vs {with_no_such_key:?}"),
    }

    // Nothing of A changed.
    let api = owner_a
        .get_api(GetApiRequest {
            slug: a.api.clone(),
        })
        .await
        .expect("A's API is still there")
        .into_inner();
    assert_eq!(api.status, i32::from(ApiStatus::Active));
    let key = owner_a
        .get_api_key(GetApiKeyRequest {
            id: a.key_id.clone(),
        })
        .await
        .expect("A's key is still there")
        .into_inner();
    assert_eq!(key.name, "A's key");
    assert_eq!(
        ipgate_tests::admin::cidrs(key.allowlist.as_ref()),
        ["198.51.100.7/32", "127.0.0.1/32"]
    );

    // An enforcer with B's enforcer token serves B's configuration only:
    // asked for A's API it answers 404, whatever key is presented.
    let b_enforcer_token = owner_b
        .create_token(CreateTokenRequest {
            name: "B's enforcers".into(),
            role: TokenRole::Enforcer.into(),
            ..Default::default()
        })
        .await
        .expect("B's enforcer token")
        .into_inner()
        .secret;
    let enforcer_b = Enforcer::start_with_token(&cp, "orders", upstream, &b_enforcer_token);
    let (res, _) = eventually(Duration::from_secs(10), "B's enforcer to sync", || async {
        let res = http::get(
            ip("127.0.0.1"),
            enforcer_b.proxy_addr,
            "/",
            &[("x-api-key", &created.secret)],
        )
        .await;
        (res.status != 503).then_some(res)
    })
    .await;
    assert_eq!(res.status, 404, "B's enforcer on A's API: {res:?}");
    assert!(res.body.contains("API_NOT_FOUND"), "{res:?}");

    // B's enforcer token reports usage into B's log only, even for A's
    // API: B cannot plant callers in A's log (and A's lockout preview).
    let mut b_sync = cp.sync_with(&b_enforcer_token).await;
    events::report(
        &mut b_sync,
        vec![ipgate_shared::proto::sync::v1::UsageEvent {
            path: "/planted-by-b".into(),
            ..event("orders", &a.key_id, "198.51.100.99", SystemTime::now())
        }],
    )
    .await;
    let a_usage = owner_a
        .query_usage_logs(QueryUsageLogsRequest {
            client_ip: "198.51.100.99".into(),
            ..Default::default()
        })
        .await
        .expect("A reads its usage log")
        .into_inner()
        .entries;
    assert!(
        a_usage.is_empty(),
        "B's report landed in A's log: {a_usage:?}"
    );

    // A's viewer reads, and every write it tries is PERMISSION_DENIED.
    let mut viewer = cp.admin_with(&a.viewer).await;
    let outcomes = call_every_rpc(&mut viewer, &a).await;
    let checked = assert_outcomes("A's viewer", &outcomes, |o| match o.needs {
        Needs::Write | Needs::Owner | Needs::Operator => Some(Code::PermissionDenied),
        Needs::Read => None,
    });
    println!("A's viewer: {checked} writes and token or tenant calls refused");
    for o in &outcomes {
        if o.needs == Needs::Read {
            assert!(o.result.is_ok(), "a viewer reads {}: {:?}", o.rpc, o.result);
        }
    }

    // No token, a made-up one, a revoked one: UNAUTHENTICATED everywhere.
    let mut anonymous = cp.admin_without_token().await;
    let outcomes = call_every_rpc(&mut anonymous, &a).await;
    assert_outcomes("no token", &outcomes, |_| Some(Code::Unauthenticated));
    let mut made_up = cp
        .admin_with("ipg_admin_madeUpTokenThatWasNeverIssued000000000000000")
        .await;
    let outcomes = call_every_rpc(&mut made_up, &a).await;
    assert_outcomes("an unknown token", &outcomes, |_| {
        Some(Code::Unauthenticated)
    });
    owner_a
        .revoke_token(RevokeTokenRequest {
            id: a.viewer_id.clone(),
            ..Default::default()
        })
        .await
        .expect("A's owner revokes the viewer");
    let outcomes = call_every_rpc(&mut viewer, &a).await;
    assert_outcomes("a revoked token", &outcomes, |_| {
        Some(Code::Unauthenticated)
    });

    // Enforcer tokens sync and report; every admin RPC refuses them.
    let mut enforcer_token = cp.admin_with(ENFORCER_TOKEN).await;
    let outcomes = call_every_rpc(&mut enforcer_token, &a).await;
    assert_outcomes("an enforcer token", &outcomes, |_| {
        Some(Code::PermissionDenied)
    });
    let mut b_enforcer = cp.admin_with(&b_enforcer_token).await;
    let outcomes = call_every_rpc(&mut b_enforcer, &a).await;
    assert_outcomes("B's enforcer token", &outcomes, |_| {
        Some(Code::PermissionDenied)
    });
}

/// A filtered list that names another tenant's object: an empty list or
/// `NOT_FOUND`, never its rows.
fn empty_or_not_found(what: &str, result: Result<usize, Status>) {
    match result {
        Ok(0) => {}
        Ok(n) => panic!("{what}: {n} rows of another tenant"),
        Err(status) => assert_eq!(status.code(), Code::NotFound, "{what}: {status:?}"),
    }
}

ipgate_tests::on_both_backends!(two_tenants);
