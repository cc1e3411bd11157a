//! An API key's life, seen through a real enforcer on SQLite and
//! PostgreSQL: rotation with a grace period (the old secret works until it
//! ends, then gets 401), rotation without one, revocation, expiry, scopes
//! against route rules, and listing keys with filters and pages.

use std::time::{Duration, SystemTime};

use ipgate_shared::proto::admin::v1::{
    ApiKeyStatus, CreateApiKeyRequest, CreateApiRequest, GetApiKeyRequest, ListApiKeysRequest,
    RevokeApiKeyRequest, RotateApiKeyRequest, RouteRule, RouteRules, Scopes,
    SetApiKeyAllowlistRequest, UpdateApiKeyRequest, UpdateApiRequest,
};
use ipgate_tests::{
    Backend, ControlPlane, World,
    admin::{ack, cidrs, entries, expect_code, timestamp},
    timing::{self, timed, whole_ms},
    world::{API, PROPAGATION},
};
use tonic::Code;

fn to_system_time(ts: prost_types::Timestamp) -> SystemTime {
    ipgate_shared::time::from_timestamp(&ts).expect("a valid timestamp")
}

async fn rotation_keeps_the_old_secret_for_the_grace_period(backend: Backend) {
    let mut w = World::start(&backend).await;
    w.admin
        .set_api_key_allowlist(SetApiKeyAllowlistRequest {
            id: w.key_id.clone(),
            allowlist: entries(&["127.0.0.1", "127.0.0.2"]),
            options: ack(),
            ..Default::default()
        })
        .await
        .expect("key list");
    w.wait_for("127.0.0.3", &w.key, 403).await;

    // A dry run shows no secret and changes nothing.
    let dry = w
        .admin
        .rotate_api_key(RotateApiKeyRequest {
            id: w.key_id.clone(),
            grace_period: Some(prost_types::Duration {
                seconds: 3,
                nanos: 0,
            }),
            validate_only: true,
            ..Default::default()
        })
        .await
        .expect("dry-run rotation")
        .into_inner();
    assert!(dry.secret.is_empty(), "a dry run shows no secret");

    // The grace period must outlast the new secret's trip to the enforcer;
    // on a machine too busy for that, rotate again with a longer one (each
    // rotation retires the secrets before the last, so the last is "old").
    let mut old = w.key.clone();
    let mut grace = Duration::from_secs(4);
    let mut rotated_in_time = None;
    for attempt in 1..=3 {
        let asked = SystemTime::now();
        let rotated = w
            .admin
            .rotate_api_key(RotateApiKeyRequest {
                id: w.key_id.clone(),
                grace_period: Some(prost_types::Duration {
                    seconds: i64::try_from(grace.as_secs()).expect("seconds fit"),
                    nanos: 0,
                }),
                ..Default::default()
            })
            .await
            .expect("rotate with a grace period")
            .into_inner();
        let answered = SystemTime::now();
        let key = rotated.key.expect("key");
        let new = rotated.secret;
        assert_eq!(key.id, w.key_id, "same id");
        assert!(
            new.starts_with(&format!("ipg_live_{}_", w.key_id)) && new != old,
            "a new secret with the visible prefix and the id"
        );
        assert_eq!(key.prefix, format!("ipg_live_{}_", w.key_id));
        assert_eq!(
            cidrs(key.allowlist.as_ref()),
            ["127.0.0.1/32", "127.0.0.2/32"],
            "same allowlist"
        );
        // The grace period runs from the rotation, which happened while we
        // waited for the answer (to the millisecond the store keeps).
        let grace_end = to_system_time(
            key.previous_secret_expires_at
                .expect("previous_secret_expires_at"),
        );
        let ms = Duration::from_millis(1);
        assert!(
            grace_end + ms >= asked + grace && grace_end <= answered + grace + ms,
            "grace ends at {grace_end:?}, not {grace:?} after the rotation ({asked:?}..{answered:?})"
        );

        // During the grace period both secrets work, under the same list.
        w.wait_for("127.0.0.1", &new, 200).await;
        let old_works = timed(w.call("127.0.0.1", &old)).await;
        if old_works.received < grace_end {
            assert_eq!(
                old_works.response.status, 200,
                "old secret in its grace period"
            );
            rotated_in_time = Some((old.clone(), new, grace_end));
            break;
        }
        println!(
            "attempt {attempt}: the new secret arrived after a {grace:?} grace period; again with a longer one"
        );
        old = new;
        grace *= 2;
    }
    let (old, new, grace_end) =
        rotated_in_time.expect("the new secret reached the enforcer within its grace period");
    assert_eq!(
        w.call("127.0.0.3", &new).await.status,
        403,
        "the list applies to the new secret"
    );

    // Then the old secret is refused, from the grace period's end on; the
    // new one keeps working.
    let switch = timing::across(
        grace_end,
        200,
        401,
        "the old secret around its grace period's end",
        || w.call("127.0.0.1", &old),
    )
    .await;
    println!(
        "old secret refused {:?} after its grace period ended",
        switch.lag
    );
    assert!(
        switch.first_after.body.contains("INVALID_API_KEY"),
        "{switch:?}"
    );
    assert_eq!(w.call("127.0.0.1", &new).await.status, 200);

    // Without a grace period the previous secret stops at once.
    let again = w
        .admin
        .rotate_api_key(RotateApiKeyRequest {
            id: w.key_id.clone(),
            ..Default::default()
        })
        .await
        .expect("rotate without grace")
        .into_inner();
    w.wait_for("127.0.0.1", &again.secret, 200).await;
    let res = w.call("127.0.0.1", &new).await;
    assert_eq!(res.status, 401, "{res:?}");
    assert!(res.body.contains("INVALID_API_KEY"), "{res:?}");
}

async fn revoked_and_expired_keys_are_refused(backend: Backend) {
    let mut w = World::start(&backend).await;

    // A typo in a secret: refused (the checksum catches it).
    let mut typo = w.key.clone().into_bytes();
    let i = typo.len() - 10;
    typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).expect("ascii");
    assert_eq!(w.call("127.0.0.1", &typo).await.status, 401);

    // Revoked: a dry run changes nothing; the real one reaches the enforcer.
    let dry = w
        .admin
        .revoke_api_key(RevokeApiKeyRequest {
            id: w.key_id.clone(),
            validate_only: true,
            ..Default::default()
        })
        .await
        .expect("dry-run revoke")
        .into_inner();
    assert_eq!(dry.status, i32::from(ApiKeyStatus::Revoked), "{dry:?}");
    assert_eq!(w.call("127.0.0.1", &w.key).await.status, 200);
    let revoked = w
        .admin
        .revoke_api_key(RevokeApiKeyRequest {
            id: w.key_id.clone(),
            ..Default::default()
        })
        .await
        .expect("revoke")
        .into_inner();
    assert_eq!(revoked.status, i32::from(ApiKeyStatus::Revoked));
    assert!(revoked.revoked_at.is_some());
    let res = w.wait_for("127.0.0.1", &w.key, 401).await;
    assert!(res.body.contains("INVALID_API_KEY"), "{res:?}");

    // Expired: works until its instant, then refused, and listed as expired.
    // The key must reach the enforcer before its instant; on a machine too
    // busy for that, another with more time (every one made is expired).
    let mut expired_ids = Vec::new();
    let mut ahead = Duration::from_secs(2);
    let mut in_time = None;
    for attempt in 1..=3 {
        let expires_at = whole_ms(SystemTime::now() + ahead);
        ahead *= 2;
        let created = w
            .admin
            .create_api_key(CreateApiKeyRequest {
                api: API.into(),
                name: "short-lived".into(),
                expires_at: Some(timestamp(expires_at)),
                ..Default::default()
            })
            .await;
        let expiring = match created {
            Ok(created) => created.into_inner(),
            Err(status) if status.code() == Code::InvalidArgument => {
                println!(
                    "attempt {attempt}: the expiry passed before the key was stored: {status:?}"
                );
                continue;
            }
            Err(status) => panic!("a key with an expiry: {status:?}"),
        };
        expired_ids.insert(0, expiring.key.expect("key").id);
        let (arrived, _) =
            ipgate_tests::eventually(PROPAGATION, "the key to reach the enforcer", || async {
                let t = timed(w.call("127.0.0.1", &expiring.secret)).await;
                if t.response.status == 200 {
                    Some(true)
                } else if t.sent >= expires_at {
                    Some(false)
                } else {
                    None
                }
            })
            .await;
        if arrived {
            in_time = Some((expiring.secret, expires_at));
            break;
        }
        println!(
            "attempt {attempt}: the key expired before it reached the enforcer; again with more time"
        );
    }
    let (secret, expires_at) = in_time.expect("an expiring key reached the enforcer in time");
    let switch = timing::across(expires_at, 200, 401, "a key around its expiry", || {
        w.call("127.0.0.1", &secret)
    })
    .await;
    let res = switch.first_after;
    assert!(res.body.contains("INVALID_API_KEY"), "{res:?}");
    let expiring_id = expired_ids[0].clone();
    let key = w
        .admin
        .get_api_key(GetApiKeyRequest {
            id: expiring_id.clone(),
        })
        .await
        .expect("get the expired key")
        .into_inner();
    assert_eq!(key.status, i32::from(ApiKeyStatus::Expired), "{key:?}");

    for (status, expected) in [
        (ApiKeyStatus::Revoked, vec![w.key_id.clone()]),
        (ApiKeyStatus::Expired, expired_ids.clone()),
        (ApiKeyStatus::Active, vec![]),
    ] {
        let listed: Vec<String> = w
            .admin
            .list_api_keys(ListApiKeysRequest {
                status: status.into(),
                ..Default::default()
            })
            .await
            .expect("list keys")
            .into_inner()
            .keys
            .into_iter()
            .map(|k| k.id)
            .collect();
        assert_eq!(listed, expected, "keys with status {status:?}");
    }
}

async fn scopes_meet_route_rules(backend: Backend) {
    let mut w = World::start(&backend).await;
    let api = w
        .admin
        .update_api(UpdateApiRequest {
            slug: API.into(),
            routes: Some(RouteRules {
                rules: vec![RouteRule {
                    method: "POST".into(),
                    path_prefix: "/orders".into(),
                    scope: "orders:write".into(),
                }],
            }),
            ..Default::default()
        })
        .await
        .expect("route rules")
        .into_inner();
    assert_eq!(api.routes.len(), 1);
    let mut admin = w.admin.clone();
    let post = || w.request("127.0.0.1", "POST", "/orders/7", &w.key);
    let (res, _) = ipgate_tests::eventually(Duration::from_secs(10), "the route rule", || async {
        let res = post().await;
        (res.status == 403).then_some(res)
    })
    .await;
    assert!(res.body.contains("INSUFFICIENT_SCOPE"), "{res:?}");
    assert_eq!(
        w.call("127.0.0.1", &w.key).await.status,
        200,
        "GET needs no scope"
    );

    let key = admin
        .update_api_key(UpdateApiKeyRequest {
            id: w.key_id.clone(),
            scopes: Some(Scopes {
                scopes: vec!["orders:write".into()],
            }),
            description: Some("writes orders".into()),
            ..Default::default()
        })
        .await
        .expect("give the key the scope")
        .into_inner();
    assert_eq!(key.scopes, ["orders:write"]);
    assert_eq!(key.description, "writes orders");
    assert_eq!(key.name, "first key", "fields left out stay");
    ipgate_tests::eventually(Duration::from_secs(10), "the scope", || async {
        (post().await.status == 200).then_some(())
    })
    .await;

    // An empty scopes message clears them.
    let key = admin
        .update_api_key(UpdateApiKeyRequest {
            id: w.key_id.clone(),
            scopes: Some(Scopes { scopes: vec![] }),
            ..Default::default()
        })
        .await
        .expect("clear the scopes")
        .into_inner();
    assert!(key.scopes.is_empty());
    assert_eq!(key.description, "writes orders");
    ipgate_tests::eventually(Duration::from_secs(10), "the scope to go", || async {
        (post().await.status == 403).then_some(())
    })
    .await;
}

async fn keys_list_with_filters_and_pages(backend: Backend) {
    let cp = ControlPlane::start(&backend);
    let mut admin = cp.admin().await;
    for slug in ["orders", "billing"] {
        admin
            .create_api(CreateApiRequest {
                slug: slug.into(),
                name: slug.into(),
                ..Default::default()
            })
            .await
            .expect("create API");
    }
    let mut ids = Vec::new();
    for (api, name, list) in [
        ("orders", "Shop backend", entries(&["203.0.113.1"])),
        ("orders", "shop worker", None),
        ("orders", "Mobile app", entries(&["203.0.113.2"])),
        ("billing", "SHOP invoices", None),
        ("billing", "ledger", None),
    ] {
        let key = admin
            .create_api_key(CreateApiKeyRequest {
                api: api.into(),
                name: name.into(),
                allowlist: list,
                ..Default::default()
            })
            .await
            .expect("create key")
            .into_inner()
            .key
            .expect("key");
        ids.push(key.id);
        // Distinct creation times, so "newest first" is one order.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A dry run shows no secret and stores nothing; a bad initial list
    // stores nothing either; grace periods have a ceiling.
    let dry = admin
        .create_api_key(CreateApiKeyRequest {
            api: "orders".into(),
            name: "never stored".into(),
            validate_only: true,
            ..Default::default()
        })
        .await
        .expect("dry-run create")
        .into_inner();
    assert!(dry.secret.is_empty(), "a dry run shows no secret");
    let status = expect_code(
        admin
            .create_api_key(CreateApiKeyRequest {
                api: "orders".into(),
                name: "bad list".into(),
                allowlist: entries(&["203.0.113.5/24"]),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "a key with a bad initial list",
    );
    assert!(status.message().contains("203.0.113.0/24"), "{status:?}");
    expect_code(
        admin
            .rotate_api_key(RotateApiKeyRequest {
                id: ids[0].clone(),
                grace_period: Some(prost_types::Duration {
                    seconds: 31 * 24 * 3600,
                    nanos: 0,
                }),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "a grace period over 30 days",
    );

    let list = |request: ListApiKeysRequest| {
        let mut admin = admin.clone();
        async move {
            admin
                .list_api_keys(request)
                .await
                .expect("list keys")
                .into_inner()
        }
    };
    let names = |keys: Vec<ipgate_shared::proto::admin::v1::ApiKey>| -> Vec<String> {
        keys.into_iter().map(|k| k.name).collect()
    };
    assert_eq!(
        names(list(ListApiKeysRequest::default()).await.keys),
        [
            "ledger",
            "SHOP invoices",
            "Mobile app",
            "shop worker",
            "Shop backend"
        ],
        "newest first"
    );
    assert_eq!(
        names(
            list(ListApiKeysRequest {
                api: "orders".into(),
                name_contains: "shop".into(),
                ..Default::default()
            })
            .await
            .keys
        ),
        ["shop worker", "Shop backend"],
        "by API and name, case-insensitive"
    );
    assert_eq!(
        names(
            list(ListApiKeysRequest {
                has_allowlist: Some(true),
                ..Default::default()
            })
            .await
            .keys
        ),
        ["Mobile app", "Shop backend"]
    );
    assert_eq!(
        list(ListApiKeysRequest {
            has_allowlist: Some(false),
            ..Default::default()
        })
        .await
        .keys
        .len(),
        3
    );

    // Pages of two: every key once, in the same order.
    let mut paged = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let page = list(ListApiKeysRequest {
            page_size: 2,
            page_token: token.clone(),
            ..Default::default()
        })
        .await;
        assert!(page.keys.len() <= 2);
        paged.extend(page.keys.into_iter().map(|k| k.id));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    ids.reverse();
    assert_eq!(paged, ids);
}

ipgate_tests::on_both_backends!(
    rotation_keeps_the_old_secret_for_the_grace_period,
    revoked_and_expired_keys_are_refused,
    scopes_meet_route_rules,
    keys_list_with_filters_and_pages,
);
