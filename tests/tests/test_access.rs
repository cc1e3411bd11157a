//! `TestAccess` answers what the enforcer really decides, on SQLite and
//! PostgreSQL: for allowed and blocked requests at every step of the order
//! of checks, the status, the error body and the reason agree with the
//! enforcer's answer and its usage-log entry, and the matched entry is the
//! one that let the address through.

use ipgate_shared::proto::admin::v1::{
    Allowlist, ApiStatus, CreateApiKeyRequest, RevokeApiKeyRequest, RouteRule, RouteRules,
    SetApiAllowlistRequest, SetApiKeyAllowlistRequest, TestAccessRequest, TestAccessResponse,
    UpdateApiRequest,
};
use ipgate_tests::{
    Backend, World,
    admin::{ack, current_revision, entries, entry},
    world::API,
};

/// One request: from where, with which key (secret and id), how.
struct Case {
    what: &'static str,
    from: &'static str,
    key: usize,
    method: &'static str,
    path: &'static str,
}

/// Once the enforcer runs the current revision, sends the request through
/// it and asks TestAccess the same question; asserts they agree and
/// returns TestAccess's answer.
async fn agree(w: &mut World, keys: &[(String, String)], case: &Case) -> TestAccessResponse {
    let (secret, id) = &keys[case.key];
    // Both answer from the same revision.
    w.wait_live().await;
    let real = w.request(case.from, case.method, case.path, secret).await;
    let logged = w.logged(real.header("x-request-id")).await;
    let answer = w
        .admin
        .test_access(TestAccessRequest {
            api: API.into(),
            api_key_id: id.clone(),
            client_ip: case.from.into(),
            method: case.method.into(),
            path: case.path.into(),
        })
        .await
        .unwrap_or_else(|s| panic!("{}: TestAccess: {s:?}", case.what))
        .into_inner();
    assert_eq!(
        (answer.http_status, answer.reason.as_str()),
        (u32::from(real.status), logged.reason.as_str()),
        "{}: TestAccess {answer:?} vs the enforcer {real:?}",
        case.what
    );
    assert_eq!(answer.allowed, real.status == 200, "{}", case.what);
    if real.status != 200 {
        assert_eq!(answer.body, real.body, "{}: the exact body", case.what);
        assert!(
            answer.body.contains(&answer.error_code) && !answer.error_code.is_empty(),
            "{}: {answer:?}",
            case.what
        );
    } else {
        assert!(answer.error_code.is_empty(), "{}: {answer:?}", case.what);
    }
    assert_eq!(
        answer
            .matched_entry
            .as_ref()
            .map_or("", |e| e.label.as_str()),
        logged.matched_label,
        "{}: the matched entry",
        case.what
    );
    answer
}

async fn test_access_agrees_with_the_enforcer(backend: Backend) {
    let mut w = World::start(&backend).await;
    w.admin
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
        .expect("route rules");
    w.admin
        .set_api_allowlist(SetApiAllowlistRequest {
            slug: API.into(),
            allowlist: Some(Allowlist {
                entries: vec![entry("127.0.0.0/29", "loopback block")],
                report_only: false,
            }),
            options: ack(),
            ..Default::default()
        })
        .await
        .expect("API list");
    w.admin
        .set_api_key_allowlist(SetApiKeyAllowlistRequest {
            id: w.key_id.clone(),
            allowlist: Some(Allowlist {
                entries: vec![entry("127.0.0.1", "me"), entry("127.0.0.2", "visitor")],
                report_only: false,
            }),
            options: ack(),
            ..Default::default()
        })
        .await
        .expect("key list");
    let trial = w
        .admin
        .create_api_key(CreateApiKeyRequest {
            api: API.into(),
            name: "trial".into(),
            scopes: vec!["orders:write".into()],
            allowlist: Some(Allowlist {
                entries: vec![entry("127.0.0.1", "trial office")],
                report_only: true,
            }),
            ..Default::default()
        })
        .await
        .expect("a key with a report-only list")
        .into_inner();
    let keys = [
        (w.key.clone(), w.key_id.clone()),
        (trial.secret.clone(), trial.key.expect("key").id),
        (String::new(), String::new()),
    ];
    // Everything in force on the enforcer.
    w.wait_for("127.0.0.3", &keys[1].0, 200).await;
    w.wait_for("127.0.0.3", &w.key, 403).await;
    w.wait_for("127.0.0.9", &w.key, 403).await;

    let cases = [
        Case {
            what: "allowed by the key's entry",
            from: "127.0.0.1",
            key: 0,
            method: "GET",
            path: "/orders/7",
        },
        Case {
            what: "the visitor",
            from: "127.0.0.2",
            key: 0,
            method: "GET",
            path: "/",
        },
        Case {
            what: "blocked by the key's list",
            from: "127.0.0.3",
            key: 0,
            method: "GET",
            path: "/orders/7",
        },
        Case {
            what: "blocked by the API's list",
            from: "127.0.0.9",
            key: 0,
            method: "GET",
            path: "/orders/7",
        },
        Case {
            what: "missing the scope",
            from: "127.0.0.1",
            key: 0,
            method: "POST",
            path: "/orders/7",
        },
        Case {
            what: "report-only would block",
            from: "127.0.0.3",
            key: 1,
            method: "POST",
            path: "/orders",
        },
        Case {
            what: "report-only matched",
            from: "127.0.0.1",
            key: 1,
            method: "GET",
            path: "/orders",
        },
        Case {
            what: "no key",
            from: "127.0.0.1",
            key: 2,
            method: "GET",
            path: "/",
        },
    ];
    let mut answers = Vec::new();
    for case in &cases {
        answers.push(agree(&mut w, &keys, case).await);
    }
    let reasons: Vec<&str> = answers.iter().map(|a| a.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "ALLOWED",
            "ALLOWED",
            "IP_NOT_ALLOWED_KEY",
            "IP_NOT_ALLOWED_API",
            "INSUFFICIENT_SCOPE",
            "WOULD_BLOCK_IP",
            "ALLOWED",
            "INVALID_API_KEY"
        ]
    );
    let first = &answers[0];
    assert_eq!(first.matched_list, "api_key");
    let matched = first.matched_entry.as_ref().expect("matched entry");
    assert_eq!(
        (matched.cidr.as_str(), matched.label.as_str()),
        ("127.0.0.1/32", "me")
    );
    assert!(first.revision > 0 && first.revision <= current_revision(&mut w.admin).await);

    // A disabled API, a revoked key: still the same answers.
    w.admin
        .update_api(UpdateApiRequest {
            slug: API.into(),
            status: ApiStatus::Disabled.into(),
            ..Default::default()
        })
        .await
        .expect("disable");
    w.wait_for("127.0.0.1", &w.key, 503).await;
    let answer = agree(&mut w, &keys, &cases[0]).await;
    assert_eq!(answer.reason, "API_DISABLED");
    w.admin
        .update_api(UpdateApiRequest {
            slug: API.into(),
            status: ApiStatus::Active.into(),
            ..Default::default()
        })
        .await
        .expect("enable");
    w.admin
        .revoke_api_key(RevokeApiKeyRequest {
            id: w.key_id.clone(),
            ..Default::default()
        })
        .await
        .expect("revoke");
    w.wait_for("127.0.0.1", &w.key, 401).await;
    let answer = agree(&mut w, &keys, &cases[0]).await;
    assert_eq!(answer.reason, "INVALID_API_KEY");

    // The API's entry is the match when the key has no list.
    w.admin
        .set_api_key_allowlist(SetApiKeyAllowlistRequest {
            id: keys[1].1.clone(),
            allowlist: entries(&[]),
            options: ack(),
            ..Default::default()
        })
        .await
        .expect("clear the trial key's list");
    w.wait_for("127.0.0.3", &keys[1].0, 200).await;
    let answer = agree(
        &mut w,
        &keys,
        &Case {
            what: "the API's entry",
            from: "127.0.0.3",
            key: 1,
            method: "GET",
            path: "/",
        },
    )
    .await;
    assert_eq!(answer.matched_list, "api");
    assert_eq!(answer.matched_entry.expect("entry").cidr, "127.0.0.0/29");
}

ipgate_tests::on_both_backends!(test_access_agrees_with_the_enforcer);
