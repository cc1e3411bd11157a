//! TestAccess: the enforcers' own decision, asked through the admin API.

use ipgate_shared::{
    decision::{API_IP_NOT_ALLOWED_BODY, KEY_IP_NOT_ALLOWED_BODY},
    proto::admin::v1::{
        Allowlist, AllowlistEntry, ApiStatus, CreateApiKeyRequest, CreateApiRequest,
        GetRevisionStatusRequest, RevokeApiKeyRequest, RouteRule, SetApiAllowlistRequest,
        TestAccessRequest, TestAccessResponse, UpdateApiRequest,
    },
};
use tonic::Code;

use crate::{
    common::{Admin, Db, admin, code},
    on_both_backends,
};

fn list(entries: &[(&str, &str)]) -> Option<Allowlist> {
    Some(Allowlist {
        entries: entries
            .iter()
            .map(|(cidr, label)| AllowlistEntry {
                cidr: (*cidr).into(),
                label: (*label).into(),
                ..Default::default()
            })
            .collect(),
        report_only: false,
    })
}

async fn key(admin: &mut Admin, scopes: &[&str], entries: &[(&str, &str)]) -> String {
    admin
        .create_api_key(CreateApiKeyRequest {
            api: "orders".into(),
            scopes: scopes.iter().map(|s| (*s).into()).collect(),
            allowlist: list(entries),
            ..Default::default()
        })
        .await
        .expect("create key")
        .into_inner()
        .key
        .expect("key")
        .id
}

async fn test_access_answers_like_an_enforcer(db: Db) {
    let server = db.start().await;
    let mut admin = admin(server.addr).await;
    admin
        .create_api(CreateApiRequest {
            slug: "orders".into(),
            routes: vec![RouteRule {
                method: "GET".into(),
                path_prefix: "/orders".into(),
                scope: "orders:read".into(),
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .set_api_allowlist(SetApiAllowlistRequest {
            slug: "orders".into(),
            allowlist: list(&[("203.0.113.0/24", "office")]),
            ..Default::default()
        })
        .await
        .unwrap();
    let listed = key(&mut admin, &["orders:read"], &[("203.0.113.5", "shop")]).await;
    let open = key(&mut admin, &["orders:read"], &[]).await;
    let unscoped = key(&mut admin, &[], &[]).await;

    let asker = admin.clone();
    let ask = |key: &str, ip: &str| {
        let mut admin = asker.clone();
        let req = TestAccessRequest {
            api: "orders".into(),
            api_key_id: key.into(),
            client_ip: ip.into(),
            method: "get".into(),
            path: "/orders/7".into(),
        };
        async move { admin.test_access(req).await.map(|r| r.into_inner()) }
    };
    let reason = |r: &TestAccessResponse| (r.reason.clone(), r.http_status, r.allowed);

    // The key's entry lets it through: which entry, on which list.
    let ok = ask(&listed, "203.0.113.5").await.unwrap();
    assert_eq!(reason(&ok), ("ALLOWED".into(), 200, true));
    assert!(ok.body.is_empty() && ok.error_code.is_empty());
    assert_eq!(ok.matched_list, "api_key");
    let matched = ok.matched_entry.unwrap();
    assert_eq!(
        (matched.cidr.as_str(), matched.label.as_str()),
        ("203.0.113.5/32", "shop")
    );
    assert!(matched.created_by.starts_with("tok_") && matched.created_at.is_some());
    let current = admin
        .get_revision_status(GetRevisionStatusRequest { revision: 0 })
        .await
        .unwrap()
        .into_inner()
        .current_revision;
    assert_eq!(ok.revision, current);

    // A key without a list: the API's entry is the one that matched.
    let via_api = ask(&open, "203.0.113.77").await.unwrap();
    assert_eq!(via_api.matched_list, "api");
    assert_eq!(via_api.matched_entry.unwrap().label, "office");

    // Denials, with the exact bodies enforcers answer.
    let on_key = ask(&listed, "203.0.113.6").await.unwrap();
    assert_eq!(reason(&on_key), ("IP_NOT_ALLOWED_KEY".into(), 403, false));
    assert_eq!(
        (on_key.error_code.as_str(), on_key.body.as_str()),
        ("IP_NOT_ALLOWED", KEY_IP_NOT_ALLOWED_BODY)
    );
    let on_api = ask(&listed, "198.51.100.1").await.unwrap();
    assert_eq!(reason(&on_api), ("IP_NOT_ALLOWED_API".into(), 403, false));
    assert_eq!(on_api.body, API_IP_NOT_ALLOWED_BODY);
    assert!(on_api.matched_entry.is_none() && on_api.matched_list.is_empty());
    let no_key = ask("", "203.0.113.5").await.unwrap();
    assert_eq!(reason(&no_key), ("INVALID_API_KEY".into(), 401, false));
    let no_scope = ask(&unscoped, "203.0.113.5").await.unwrap();
    assert_eq!(reason(&no_scope), ("INSUFFICIENT_SCOPE".into(), 403, false));
    // IPv4-mapped IPv6 is the IPv4 address.
    let mapped = ask(&listed, "::ffff:203.0.113.5").await.unwrap();
    assert_eq!(mapped.reason, "ALLOWED");

    admin
        .revoke_api_key(RevokeApiKeyRequest {
            id: open.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        ask(&open, "203.0.113.5").await.unwrap().reason,
        "INVALID_API_KEY"
    );
    admin
        .update_api(UpdateApiRequest {
            slug: "orders".into(),
            status: ApiStatus::Disabled.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let disabled = ask(&listed, "203.0.113.5").await.unwrap();
    assert_eq!(reason(&disabled), ("API_DISABLED".into(), 503, false));

    // Unknown objects are not found; bad input names its field.
    assert_eq!(
        code(
            ask("0123456789abcdef", "203.0.113.5")
                .await
                .map(tonic::Response::new)
        ),
        Code::NotFound
    );
    let unknown_api = admin
        .test_access(TestAccessRequest {
            api: "nope".into(),
            client_ip: "203.0.113.5".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(unknown_api), Code::NotFound);
    let bad = admin
        .test_access(TestAccessRequest {
            api: "orders".into(),
            client_ip: "203.0.113".into(),
            path: "orders".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(bad), Code::InvalidArgument);
    server.shutdown().await.unwrap();
}

on_both_backends!(test_access_answers_like_an_enforcer);
