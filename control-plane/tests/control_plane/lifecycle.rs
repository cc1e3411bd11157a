//! APIs and keys through their lives: list, update, delete, revoke, rotate,
//! with etags, dry runs and what enforcers receive.

use std::time::{Duration, SystemTime};

use ipgate_control_plane::store::{KeyChanges, NewKey, Store, TenantId, WriteCtx};
use ipgate_shared::{
    KeyConfig, SecretHash,
    key::NewKey as GeneratedKey,
    proto::{
        admin::v1::{
            Allowlist, AllowlistEntry, ApiKeyStatus, ApiStatus, CreateApiKeyRequest,
            CreateApiRequest, DeleteApiRequest, GetApiKeyRequest, GetApiRequest,
            ListApiKeysRequest, ListApisRequest, ListAuditEventsRequest, RevokeApiKeyRequest,
            RotateApiKeyRequest, RouteRule, RouteRules, Scopes, UpdateApiKeyRequest,
            UpdateApiRequest,
        },
        sync::v1::change::Kind as ChangeKind,
    },
    time,
};
use tonic::Code;
use tonic_types::StatusExt;

use crate::{
    common::{Admin, Db, admin, code},
    on_both_backends,
    sync::{Enforcer, PATIENCE},
};

async fn create_api(admin: &mut Admin, slug: &str) {
    admin
        .create_api(CreateApiRequest {
            slug: slug.into(),
            routes: vec![RouteRule {
                method: "GET".into(),
                path_prefix: "/".into(),
                scope: "read".into(),
            }],
            ..Default::default()
        })
        .await
        .expect("create API");
}

async fn create_key(admin: &mut Admin, api: &str, name: &str, cidrs: &[&str]) -> (String, String) {
    let created = admin
        .create_api_key(CreateApiKeyRequest {
            api: api.into(),
            name: name.into(),
            allowlist: Some(Allowlist {
                entries: cidrs
                    .iter()
                    .map(|c| AllowlistEntry {
                        cidr: (*c).into(),
                        ..Default::default()
                    })
                    .collect(),
                report_only: false,
            }),
            ..Default::default()
        })
        .await
        .expect("create key")
        .into_inner();
    (created.key.expect("key").id, created.secret)
}

/// Owned copies, to compare with lists of ids.
fn v(ids: &[&String]) -> Vec<String> {
    ids.iter().map(|s| (*s).clone()).collect()
}

async fn get_api(admin: &mut Admin, slug: &str) -> ipgate_shared::proto::admin::v1::Api {
    admin
        .get_api(GetApiRequest { slug: slug.into() })
        .await
        .expect("get API")
        .into_inner()
}

async fn apis_are_listed_updated_and_deleted(db: Db) {
    let server = db.start().await;
    let mut admin = admin(server.addr).await;
    for i in 1..=5 {
        create_api(&mut admin, &format!("api-{i}")).await;
    }
    for slug in ["api-2", "api-4"] {
        admin
            .update_api(UpdateApiRequest {
                slug: slug.into(),
                status: ApiStatus::Disabled.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let list = |status: ApiStatus, size: u32, token: String| {
        let mut admin = admin.clone();
        async move {
            let page = admin
                .list_apis(ListApisRequest {
                    status: status.into(),
                    page_size: size,
                    page_token: token,
                })
                .await
                .unwrap()
                .into_inner();
            let slugs: Vec<String> = page.apis.into_iter().map(|a| a.slug).collect();
            (slugs, page.next_page_token)
        }
    };
    assert_eq!(
        list(ApiStatus::Disabled, 0, String::new()).await.0,
        ["api-2", "api-4"]
    );
    assert_eq!(
        list(ApiStatus::Active, 0, String::new()).await.0,
        ["api-1", "api-3", "api-5"]
    );
    let (first, token) = list(ApiStatus::Unspecified, 2, String::new()).await;
    let (second, token) = list(ApiStatus::Unspecified, 2, token).await;
    let (third, token) = list(ApiStatus::Unspecified, 2, token).await;
    assert_eq!(
        [first, second, third].concat(),
        ["api-1", "api-2", "api-3", "api-4", "api-5"]
    );
    assert!(token.is_empty());

    // Update: fields left out stay; routes can be cleared; etags guard.
    let before = get_api(&mut admin, "api-1").await;
    let dry = admin
        .update_api(UpdateApiRequest {
            slug: "api-1".into(),
            name: Some("First".into()),
            validate_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dry.name, "First");
    assert_eq!(get_api(&mut admin, "api-1").await, before);
    let updated = admin
        .update_api(UpdateApiRequest {
            slug: "api-1".into(),
            name: Some("First".into()),
            routes: Some(RouteRules { rules: vec![] }),
            etag: before.etag.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((updated.name.as_str(), updated.routes.len()), ("First", 0));
    assert_eq!(updated.status, ApiStatus::Active as i32);
    let stale = admin
        .update_api(UpdateApiRequest {
            slug: "api-1".into(),
            name: Some("Second".into()),
            etag: before.etag,
            ..Default::default()
        })
        .await;
    assert_eq!(code(stale), Code::Aborted);
    // An update that changes nothing takes no revision.
    let unchanged = get_api(&mut admin, "api-1").await;
    let nothing = admin
        .update_api(UpdateApiRequest {
            slug: "api-1".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(nothing), Code::InvalidArgument);
    assert_eq!(get_api(&mut admin, "api-1").await, unchanged);
    let bad = admin
        .update_api(UpdateApiRequest {
            slug: "api-1".into(),
            status: 7,
            routes: Some(RouteRules {
                rules: vec![RouteRule {
                    method: "GET".into(),
                    path_prefix: "no-slash".into(),
                    scope: "s".into(),
                }],
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let fields: Vec<String> = bad
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["status", "routes.rules[0]"]);

    // key_count counts active keys.
    let (keep, _) = create_key(&mut admin, "api-1", "keep", &[]).await;
    let (gone, _) = create_key(&mut admin, "api-1", "gone", &[]).await;
    admin
        .revoke_api_key(RevokeApiKeyRequest {
            id: gone.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(get_api(&mut admin, "api-1").await.key_count, 1);

    // Delete: refused with active keys, unless forced; a dry run changes nothing.
    let mut enforcer = Enforcer::start(server.addr, "e1", 0).await;
    let (at, _, keys) = enforcer.full_snapshot().await;
    assert_eq!(keys.len(), 1);
    let refused = admin
        .delete_api(DeleteApiRequest {
            slug: "api-1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let dry = admin
        .delete_api(DeleteApiRequest {
            slug: "api-1".into(),
            force: true,
            validate_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dry.revoked_key_ids, std::slice::from_ref(&keep));
    assert_eq!(get_api(&mut admin, "api-1").await.key_count, 1);
    let deleted = admin
        .delete_api(DeleteApiRequest {
            slug: "api-1".into(),
            force: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.revoked_key_ids, std::slice::from_ref(&keep));
    assert_eq!(deleted.api.unwrap().name, "First");
    assert_eq!(deleted.revision, at + 1);
    let delta = enforcer.full_delta(PATIENCE).await;
    assert_eq!(delta.revision, at + 1);
    let kinds: Vec<ChangeKind> = delta.changes.into_iter().filter_map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [
            ChangeKind::DeleteKey(keep.clone()),
            ChangeKind::DeleteApi("api-1".into())
        ]
    );
    assert_eq!(
        code(
            admin
                .get_api(GetApiRequest {
                    slug: "api-1".into()
                })
                .await
        ),
        Code::NotFound
    );
    // Its keys stay readable, revoked, for the record.
    let kept = admin
        .get_api_key(GetApiKeyRequest { id: keep })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kept.status, ApiKeyStatus::Revoked as i32);
    // Without keys no force is needed; an unknown API is not found.
    admin
        .delete_api(DeleteApiRequest {
            slug: "api-2".into(),
            ..Default::default()
        })
        .await
        .expect("an API without keys goes");
    let unknown = admin
        .delete_api(DeleteApiRequest {
            slug: "api-9".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(unknown), Code::NotFound);

    let audit = admin
        .list_audit_events(ListAuditEventsRequest {
            object_type: "api".into(),
            object_id: "api-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["api.delete", "api.update", "api.create"]);
    assert!(audit[0].after_json.is_empty() && audit[0].before_json.contains("First"));
    assert!(audit[2].before_json.is_empty());
    server.shutdown().await.unwrap();
}

async fn keys_are_listed_filtered_and_updated(db: Db) {
    let server = db.start().await;
    let mut admin = admin(server.addr).await;
    create_api(&mut admin, "orders").await;
    create_api(&mut admin, "billing").await;
    // Creation instants are milliseconds: space the keys out so "newest
    // first" has one answer (ties fall back to the id, which is random).
    let mut make = async |api: &str, name: &str, list: &[&str]| {
        let (id, _) = create_key(&mut admin, api, name, list).await;
        tokio::time::sleep(Duration::from_millis(3)).await;
        id
    };
    let backend = make("orders", "Shop Backend", &["203.0.113.5"]).await;
    let frontend = make("orders", "shop_frontend", &[]).await;
    let batch = make("orders", "100% batch", &[]).await;
    let cron = make("orders", "cron", &[]).await;
    let other = make("billing", "shop billing", &[]).await;
    admin
        .revoke_api_key(RevokeApiKeyRequest {
            id: cron.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    // An expired key, made through the store (the API refuses past expiry).
    let store = Store::open(db.url()).await.unwrap();
    let generated = GeneratedKey::generate();
    let past = SystemTime::now() - Duration::from_secs(60);
    let ctx = WriteCtx::system(TenantId::DEFAULT, SystemTime::now());
    store
        .create_key(
            &ctx,
            NewKey {
                name: "old".into(),
                description: String::new(),
                config: KeyConfig {
                    id: generated.id,
                    api: "orders".parse().unwrap(),
                    secret_hash: SecretHash::of(&generated.secret),
                    scopes: vec![],
                    expires_at: Some(past),
                    allowlist: Default::default(),
                    previous_secrets: vec![],
                },
            },
        )
        .await
        .unwrap();
    let expired = generated.id.to_string();

    let ids = |req: ListApiKeysRequest| {
        let mut admin = admin.clone();
        async move {
            let page = admin.list_api_keys(req).await.unwrap().into_inner();
            page.keys.into_iter().map(|k| k.id).collect::<Vec<_>>()
        }
    };
    let orders = |req: ListApiKeysRequest| ListApiKeysRequest {
        api: "orders".into(),
        ..req
    };
    // Newest first.
    assert_eq!(
        ids(orders(ListApiKeysRequest::default())).await,
        v(&[&expired, &cron, &batch, &frontend, &backend])
    );
    let named = |text: &str| {
        orders(ListApiKeysRequest {
            name_contains: text.into(),
            ..Default::default()
        })
    };
    assert_eq!(ids(named("SHOP")).await, v(&[&frontend, &backend]));
    assert_eq!(ids(named("%")).await, v(&[&batch]));
    assert_eq!(ids(named("_")).await, v(&[&frontend]));
    let everywhere = ListApiKeysRequest {
        name_contains: "shop".into(),
        ..Default::default()
    };
    assert_eq!(ids(everywhere).await, v(&[&other, &frontend, &backend]));
    let with_list = |has| {
        orders(ListApiKeysRequest {
            has_allowlist: Some(has),
            ..Default::default()
        })
    };
    assert_eq!(ids(with_list(true)).await, v(&[&backend]));
    assert_eq!(ids(with_list(false)).await.len(), 4);
    let by_status = |status: ApiKeyStatus| {
        orders(ListApiKeysRequest {
            status: status.into(),
            ..Default::default()
        })
    };
    assert_eq!(ids(by_status(ApiKeyStatus::Revoked)).await, v(&[&cron]));
    assert_eq!(ids(by_status(ApiKeyStatus::Expired)).await, v(&[&expired]));
    assert_eq!(
        ids(by_status(ApiKeyStatus::Active)).await,
        v(&[&batch, &frontend, &backend])
    );
    let read = admin
        .get_api_key(GetApiKeyRequest {
            id: expired.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.status, ApiKeyStatus::Expired as i32);

    // Pages of 2: 2 + 2 + 1, in order.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = admin
            .list_api_keys(orders(ListApiKeysRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        paged.extend(page.keys.into_iter().map(|k| k.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, v(&[&expired, &cron, &batch, &frontend, &backend]));

    // Update: only what is given; `scopes` replaces all.
    let key = admin
        .update_api_key(UpdateApiKeyRequest {
            id: backend.clone(),
            description: Some("the shop's server".into()),
            scopes: Some(Scopes {
                scopes: vec!["orders:write".into(), "orders:read".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(key.name, "Shop Backend");
    assert_eq!(key.description, "the shop's server");
    assert_eq!(key.scopes, ["orders:read", "orders:write"]);
    let bad = admin
        .update_api_key(UpdateApiKeyRequest {
            id: backend.clone(),
            scopes: Some(Scopes {
                scopes: vec!["bad scope".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let violation = &bad.get_details_bad_request().unwrap().field_violations[0];
    assert_eq!(violation.field, "scopes.scopes[0]");
    let stale = admin
        .update_api_key(UpdateApiKeyRequest {
            id: backend.clone(),
            name: Some("x".into()),
            etag: "1".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(stale), Code::Aborted);
    let nothing = admin
        .update_api_key(UpdateApiKeyRequest {
            id: backend.clone(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(nothing), Code::InvalidArgument);
    server.shutdown().await.unwrap();
}

async fn keys_are_revoked_and_rotated(db: Db) {
    let server = db.start().await;
    let mut admin = admin(server.addr).await;
    create_api(&mut admin, "orders").await;
    let (id, old_secret) = create_key(&mut admin, "orders", "shop", &["203.0.113.5"]).await;
    let mut enforcer = Enforcer::start(server.addr, "e1", 0).await;
    enforcer.full_snapshot().await;

    // Rotation with a grace period: same id and list, a new secret; the old
    // one travels to enforcers with the instant it stops working.
    let grace = |secs| {
        Some(prost_types::Duration {
            seconds: secs,
            nanos: 0,
        })
    };
    let too_long = admin
        .rotate_api_key(RotateApiKeyRequest {
            id: id.clone(),
            grace_period: grace(31 * 86_400),
            ..Default::default()
        })
        .await;
    assert_eq!(code(too_long), Code::InvalidArgument);
    let dry = admin
        .rotate_api_key(RotateApiKeyRequest {
            id: id.clone(),
            grace_period: grace(3600),
            validate_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(dry.secret.is_empty());
    let rotated = admin
        .rotate_api_key(RotateApiKeyRequest {
            id: id.clone(),
            grace_period: grace(3600),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let key = rotated.key.unwrap();
    assert_ne!(rotated.secret, old_secret);
    assert!(rotated.secret.starts_with(&key.prefix));
    assert_eq!(key.id, id);
    assert_eq!(key.allowlist.unwrap().entries[0].cidr, "203.0.113.5/32");
    let until = time::from_timestamp(&key.previous_secret_expires_at.unwrap()).unwrap();
    let now = SystemTime::now();
    assert!(until > now + Duration::from_secs(3500) && until <= now + Duration::from_secs(3600));
    let delta = enforcer.full_delta(PATIENCE).await;
    let Some(ChangeKind::PutKey(config)) = delta.changes[0].kind.clone() else {
        panic!("expected put_key, got {delta:?}");
    };
    assert_eq!(
        config.secret_sha256,
        SecretHash::of(&rotated.secret).as_bytes()
    );
    assert_eq!(config.previous_secrets.len(), 1);
    let previous = &config.previous_secrets[0];
    assert_eq!(
        previous.secret_sha256,
        SecretHash::of(&old_secret).as_bytes()
    );
    assert_eq!(previous.valid_until, key.previous_secret_expires_at);
    // Entry metadata stays in the control plane.
    assert_eq!(config.allowlist.unwrap().entries[0].cidr, "203.0.113.5/32");

    // Once the grace period is over, the next write drops the old secret.
    let store = Store::open(db.url()).await.unwrap();
    let later = WriteCtx::system(TenantId::DEFAULT, now + Duration::from_secs(7200));
    let key_id = id.parse().unwrap();
    let record = store
        .update_key(&later, &key_id, KeyChanges::default(), None)
        .await
        .unwrap();
    assert!(record.config.previous_secrets.is_empty());
    let delta = enforcer.full_delta(PATIENCE).await;
    let Some(ChangeKind::PutKey(config)) = delta.changes[0].kind.clone() else {
        panic!("expected put_key");
    };
    assert!(config.previous_secrets.is_empty());

    // Revocation: a delete_key for enforcers, once.
    let revoked = admin
        .revoke_api_key(RevokeApiKeyRequest {
            id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.status, ApiKeyStatus::Revoked as i32);
    assert!(revoked.revoked_at.is_some());
    let delta = enforcer.full_delta(PATIENCE).await;
    assert_eq!(
        delta.changes[0].kind,
        Some(ChangeKind::DeleteKey(id.clone()))
    );
    let again = admin
        .revoke_api_key(RevokeApiKeyRequest {
            id: id.clone(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(again), Code::FailedPrecondition);
    let rotate = admin
        .rotate_api_key(RotateApiKeyRequest {
            id: id.clone(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(rotate), Code::FailedPrecondition);

    // The audit log has every step, and never a secret or hash.
    let audit = admin
        .list_audit_events(ListAuditEventsRequest {
            object_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "api_key.revoke",
            "api_key.update",
            "api_key.rotate",
            "api_key.create"
        ]
    );
    assert_eq!(audit[1].actor_token_id, "system");
    let hex = |s: &str| {
        SecretHash::of(s)
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    for event in &audit {
        for text in [&event.before_json, &event.after_json] {
            for secret in [&old_secret, &rotated.secret] {
                assert!(!text.contains(secret.as_str()));
                assert!(!text.contains(&hex(secret)));
            }
        }
    }
    server.shutdown().await.unwrap();
}

/// A rotation after a leak must leave only the new secret (and at most the
/// one it replaced, for the grace asked now): older graced secrets die.
async fn a_rotation_retires_every_older_secret(db: Db) {
    let server = db.start().await;
    let mut admin = admin(server.addr).await;
    create_api(&mut admin, "orders").await;
    let (id, _) = create_key(&mut admin, "orders", "shop", &[]).await;
    let mut enforcer = Enforcer::start(server.addr, "e1", 0).await;
    enforcer.full_snapshot().await;
    let rotate = |grace_secs: i64| RotateApiKeyRequest {
        id: id.clone(),
        grace_period: Some(prost_types::Duration {
            seconds: grace_secs,
            nanos: 0,
        }),
        ..Default::default()
    };
    let previous =
        |delta: ipgate_shared::proto::sync::v1::Delta| match delta.changes[0].kind.clone() {
            Some(ChangeKind::PutKey(config)) => config.previous_secrets.len(),
            other => panic!("expected put_key, got {other:?}"),
        };
    admin.rotate_api_key(rotate(3600)).await.unwrap();
    assert_eq!(previous(enforcer.full_delta(PATIENCE).await), 1);
    admin.rotate_api_key(rotate(3600)).await.unwrap();
    assert_eq!(
        previous(enforcer.full_delta(PATIENCE).await),
        1,
        "only the secret just replaced"
    );
    let last = admin.rotate_api_key(rotate(0)).await.unwrap().into_inner();
    assert_eq!(previous(enforcer.full_delta(PATIENCE).await), 0);
    assert!(last.key.unwrap().previous_secret_expires_at.is_none());
    server.shutdown().await.unwrap();
}

on_both_backends!(
    apis_are_listed_updated_and_deleted,
    keys_are_listed_filtered_and_updated,
    keys_are_revoked_and_rotated,
    a_rotation_retires_every_older_secret,
);
