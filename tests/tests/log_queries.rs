//! Reading the usage log and the audit log, on SQLite and PostgreSQL:
//! every usage filter (API, key, method, status, reason and its
//! `ALLOWED_ANY` / `BLOCKED_ANY` groups, client address or CIDR, time
//! range) alone and combined, newest first, in pages, and the same filters
//! on the CSV export; audit events filtered by object, actor and time, in
//! pages, with the object before and after as JSON, and nothing for dry
//! runs.

use std::time::{Duration, SystemTime};

use ipgate_shared::proto::{
    admin::v1::{
        AuditEvent, CreateApiKeyRequest, CreateApiRequest, CreateTokenRequest,
        ExportUsageLogsRequest, ListAuditEventsRequest, QueryUsageLogsRequest,
        SetApiAllowlistRequest, TokenRole, UpdateApiRequest,
    },
    sync::v1::UsageEvent,
};
use ipgate_tests::{
    Backend, ControlPlane,
    admin::{entries, export_csv, timestamp},
    events::{self, event},
    process::AdminClient,
};
use tonic::Code;
use tonic_types::StatusExt;

const MINUTE: Duration = Duration::from_secs(60);

/// Request ids of the usage entries a query answers, in order.
async fn query(admin: &mut AdminClient, filter: QueryUsageLogsRequest) -> Vec<String> {
    admin
        .query_usage_logs(filter)
        .await
        .expect("query usage logs")
        .into_inner()
        .entries
        .into_iter()
        .map(|e| e.request_id)
        .collect()
}

async fn usage_log_filters(backend: Backend) {
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
    let key = admin
        .create_api_key(CreateApiKeyRequest {
            api: "orders".into(),
            name: "k".into(),
            ..Default::default()
        })
        .await
        .expect("create key")
        .into_inner()
        .key
        .expect("key")
        .id;

    // Six requests ten minutes apart, two hours ago, named e1..e6.
    // Whole seconds: the store keeps milliseconds.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(now) - 120 * MINUTE;
    let at = |i: u32| base + i * 10 * MINUTE;
    let e = |n: u32, api: &str, key: &str, method: &str, status: u32, ip: &str, reason: &str| {
        UsageEvent {
            request_id: format!("e{n}"),
            method: method.into(),
            status_code: status,
            reason: reason.into(),
            ..event(api, key, ip, at(n - 1))
        }
    };
    let mut sync = cp.sync().await;
    events::report(
        &mut sync,
        vec![
            e(1, "orders", &key, "GET", 200, "198.51.100.1", "ALLOWED"),
            e(
                2,
                "orders",
                &key,
                "POST",
                403,
                "198.51.100.2",
                "IP_NOT_ALLOWED_KEY",
            ),
            e(
                3,
                "orders",
                "",
                "GET",
                401,
                "203.0.113.5",
                "INVALID_API_KEY",
            ),
            e(
                4,
                "billing",
                "",
                "GET",
                403,
                "203.0.113.6",
                "IP_NOT_ALLOWED_API",
            ),
            e(
                5,
                "orders",
                &key,
                "GET",
                200,
                "2001:db8::1",
                "WOULD_BLOCK_IP",
            ),
            e(
                6,
                "orders",
                &key,
                "DELETE",
                403,
                "198.51.100.200",
                "INSUFFICIENT_SCOPE",
            ),
        ],
    )
    .await;

    let f = QueryUsageLogsRequest::default;
    let cases: Vec<(&str, QueryUsageLogsRequest, &[&str])> = vec![
        (
            "all, newest first",
            f(),
            &["e6", "e5", "e4", "e3", "e2", "e1"],
        ),
        (
            "by API",
            QueryUsageLogsRequest {
                api: "billing".into(),
                ..f()
            },
            &["e4"],
        ),
        (
            "by key",
            QueryUsageLogsRequest {
                api_key_id: key.clone(),
                ..f()
            },
            &["e6", "e5", "e2", "e1"],
        ),
        (
            "by method",
            QueryUsageLogsRequest {
                method: "POST".into(),
                ..f()
            },
            &["e2"],
        ),
        (
            "by status",
            QueryUsageLogsRequest {
                status_code: 403,
                ..f()
            },
            &["e6", "e4", "e2"],
        ),
        (
            "by reason",
            QueryUsageLogsRequest {
                reason: "IP_NOT_ALLOWED_KEY".into(),
                ..f()
            },
            &["e2"],
        ),
        (
            "allowed, any reason",
            QueryUsageLogsRequest {
                reason: "ALLOWED_ANY".into(),
                ..f()
            },
            &["e5", "e1"],
        ),
        (
            "blocked, any reason",
            QueryUsageLogsRequest {
                reason: "BLOCKED_ANY".into(),
                ..f()
            },
            &["e6", "e4", "e3", "e2"],
        ),
        (
            "by address",
            QueryUsageLogsRequest {
                client_ip: "203.0.113.5".into(),
                ..f()
            },
            &["e3"],
        ),
        (
            "by IPv4 CIDR",
            QueryUsageLogsRequest {
                client_ip: "198.51.100.0/24".into(),
                ..f()
            },
            &["e6", "e2", "e1"],
        ),
        (
            "by a narrow CIDR",
            QueryUsageLogsRequest {
                client_ip: "198.51.100.0/31".into(),
                ..f()
            },
            &["e1"],
        ),
        (
            "by IPv6 CIDR",
            QueryUsageLogsRequest {
                client_ip: "2001:db8::/48".into(),
                ..f()
            },
            &["e5"],
        ),
        (
            "by time, start inclusive, end exclusive",
            QueryUsageLogsRequest {
                start_time: Some(timestamp(at(1))),
                end_time: Some(timestamp(at(3))),
                ..f()
            },
            &["e3", "e2"],
        ),
        (
            "since a time",
            QueryUsageLogsRequest {
                start_time: Some(timestamp(at(4))),
                ..f()
            },
            &["e6", "e5"],
        ),
        (
            "combined",
            QueryUsageLogsRequest {
                api: "orders".into(),
                status_code: 403,
                client_ip: "198.51.100.0/24".into(),
                ..f()
            },
            &["e6", "e2"],
        ),
        (
            "nothing matches",
            QueryUsageLogsRequest {
                method: "PATCH".into(),
                ..f()
            },
            &[],
        ),
    ];
    for (what, filter, expected) in cases {
        assert_eq!(query(&mut admin, filter).await, expected, "{what}");
    }

    // Pages of two walk the same list.
    let mut paged = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let page = admin
            .query_usage_logs(QueryUsageLogsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..f()
            })
            .await
            .expect("a page")
            .into_inner();
        assert!(page.entries.len() <= 2);
        paged.extend(page.entries.into_iter().map(|e| e.request_id));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(paged, ["e6", "e5", "e4", "e3", "e2", "e1"]);

    // Bad filters are named.
    for (what, filter) in [
        (
            "client_ip",
            QueryUsageLogsRequest {
                client_ip: "not-an-ip".into(),
                ..f()
            },
        ),
        (
            "reason",
            QueryUsageLogsRequest {
                reason: "NOT_A_REASON".into(),
                ..f()
            },
        ),
    ] {
        let status = admin.query_usage_logs(filter).await.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        let named = status
            .get_details_bad_request()
            .is_some_and(|b| b.field_violations.iter().any(|v| v.field == what));
        assert!(named, "a field violation on {what}: {status:?}");
    }

    // The export takes the same filters, newest first.
    let csv = export_csv(
        &mut admin,
        ExportUsageLogsRequest {
            reason: "BLOCKED_ANY".into(),
            client_ip: "198.51.100.0/24".into(),
            ..Default::default()
        },
    )
    .await
    .expect("export");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "header and two rows:\n{csv}");
    assert!(lines[0].contains("request_id"), "{csv}");
    assert!(lines[1].contains("e6") && lines[2].contains("e2"), "{csv}");
    let csv = export_csv(
        &mut admin,
        ExportUsageLogsRequest {
            start_time: Some(timestamp(at(1))),
            end_time: Some(timestamp(at(3))),
            method: "GET".into(),
            ..Default::default()
        },
    )
    .await
    .expect("export");
    assert_eq!(csv.lines().count(), 2, "header and e3:\n{csv}");
    assert!(csv.contains("e3"), "{csv}");
}

async fn audit(admin: &mut AdminClient, filter: ListAuditEventsRequest) -> Vec<AuditEvent> {
    admin
        .list_audit_events(ListAuditEventsRequest {
            page_size: 1000,
            ..filter
        })
        .await
        .expect("audit events")
        .into_inner()
        .events
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

async fn audit_log_filters(backend: Backend) {
    let cp = ControlPlane::start(&backend);
    let mut owner = cp.admin().await;
    let created = owner
        .create_token(CreateTokenRequest {
            name: "ci pipeline".into(),
            role: TokenRole::Editor.into(),
            ..Default::default()
        })
        .await
        .expect("editor token")
        .into_inner();
    let editor_id = created.token.expect("token").id;
    let mut editor = cp.admin_with(&created.secret).await;

    owner
        .create_api(CreateApiRequest {
            slug: "orders".into(),
            name: "Orders".into(),
            ..Default::default()
        })
        .await
        .expect("create orders");
    // Dry runs leave no trace.
    owner
        .create_api(CreateApiRequest {
            slug: "ghost".into(),
            name: "Ghost".into(),
            validate_only: true,
            ..Default::default()
        })
        .await
        .expect("dry-run create");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let middle = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    editor
        .create_api(CreateApiRequest {
            slug: "billing".into(),
            name: "Billing".into(),
            ..Default::default()
        })
        .await
        .expect("create billing");
    editor
        .set_api_allowlist(SetApiAllowlistRequest {
            slug: "billing".into(),
            allowlist: entries(&["203.0.113.0/24"]),
            ..Default::default()
        })
        .await
        .expect("billing list");
    editor
        .update_api(UpdateApiRequest {
            slug: "billing".into(),
            name: Some("Billing API".into()),
            ..Default::default()
        })
        .await
        .expect("rename billing");

    // By object: billing's three changes, newest first, with before/after.
    let events = audit(
        &mut owner,
        ListAuditEventsRequest {
            object_type: "api".into(),
            object_id: "billing".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(events.len(), 3, "{events:#?}");
    let (rename, list, create) = (&events[0], &events[1], &events[2]);
    assert!(create.before_json.is_empty(), "{create:?}");
    assert!(create.after_json.contains("billing"), "{create:?}");
    json(&create.after_json);
    assert!(
        !json(&list.before_json)
            .to_string()
            .contains("203.0.113.0/24"),
        "{list:?}"
    );
    assert!(
        json(&list.after_json)
            .to_string()
            .contains("203.0.113.0/24"),
        "{list:?}"
    );
    assert!(list.action.contains("allowlist"), "{list:?}");
    assert!(
        json(&rename.before_json)
            .to_string()
            .contains("\"Billing\""),
        "{rename:?}"
    );
    assert!(
        json(&rename.after_json).to_string().contains("Billing API"),
        "{rename:?}"
    );
    for e in &events {
        assert_eq!(e.actor_token_id, editor_id);
        assert_eq!(e.object_type, "api");
        assert!(e.revision > 0 && e.time.is_some(), "{e:?}");
    }
    assert!(
        rename.revision > list.revision && list.revision > create.revision,
        "newest first"
    );

    // By actor: the editor's three, nobody else's.
    let by_editor = audit(
        &mut owner,
        ListAuditEventsRequest {
            actor_token_id: editor_id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_editor.len(), 3, "{by_editor:#?}");

    // By time: the owner's writes came before `middle`, the editor's after.
    let before: Vec<String> = audit(
        &mut owner,
        ListAuditEventsRequest {
            end_time: Some(timestamp(middle)),
            ..Default::default()
        },
    )
    .await
    .into_iter()
    .map(|e| e.action)
    .collect();
    assert!(before.iter().any(|a| a.starts_with("token")), "{before:?}");
    assert!(before.iter().any(|a| a.starts_with("api")), "{before:?}");
    let after = audit(
        &mut owner,
        ListAuditEventsRequest {
            start_time: Some(timestamp(middle)),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(after.len(), 3, "{after:#?}");
    assert!(after.iter().all(|e| e.actor_token_id == editor_id));

    // No trace of the dry run; the token creation is there, at revision 0.
    let all = audit(&mut owner, ListAuditEventsRequest::default()).await;
    assert!(
        all.iter().all(|e| e.object_id != "ghost"),
        "a dry run was audited: {all:#?}"
    );
    let token_event = all
        .iter()
        .find(|e| e.object_type == "token" && e.object_id == editor_id)
        .unwrap_or_else(|| panic!("the token's creation: {all:#?}"));
    assert_eq!(token_event.revision, 0);
    assert!(
        !token_event.after_json.contains(&created.secret),
        "the audit log never holds a secret"
    );

    // Pages of one walk the same list.
    let mut paged = Vec::new();
    let mut token = String::new();
    for _ in 0..20 {
        let page = owner
            .list_audit_events(ListAuditEventsRequest {
                page_size: 1,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("a page")
            .into_inner();
        assert!(page.events.len() <= 1);
        paged.extend(page.events.into_iter().map(|e| e.id));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(paged, all.into_iter().map(|e| e.id).collect::<Vec<_>>());
}

/// Usage events older than the retention period (default 30 days) are
/// pruned; the control plane prunes at start and then periodically.
async fn old_usage_is_pruned(backend: Backend) {
    let mut cp = ControlPlane::start(&backend);
    let mut admin = cp.admin().await;
    admin
        .create_api(CreateApiRequest {
            slug: "orders".into(),
            name: "Orders".into(),
            ..Default::default()
        })
        .await
        .expect("create API");
    let day = 24 * 60 * MINUTE;
    let now = SystemTime::now();
    let mut sync = cp.sync().await;
    events::report(
        &mut sync,
        vec![
            UsageEvent {
                request_id: "last-month".into(),
                ..event("orders", "", "198.51.100.1", now - 31 * day)
            },
            UsageEvent {
                request_id: "last-week".into(),
                ..event("orders", "", "198.51.100.1", now - 7 * day)
            },
        ],
    )
    .await;
    cp.restart();
    let mut admin = cp.admin().await;
    let (kept, _) = ipgate_tests::eventually(
        Duration::from_secs(10),
        "the month-old event to be pruned",
        || {
            let mut admin = admin.clone();
            async move {
                let ids = query(&mut admin, QueryUsageLogsRequest::default()).await;
                (!ids.contains(&"last-month".to_owned())).then_some(ids)
            }
        },
    )
    .await;
    assert_eq!(kept, ["last-week"]);
    assert_eq!(
        query(&mut admin, QueryUsageLogsRequest::default()).await,
        ["last-week"]
    );
}

ipgate_tests::on_both_backends!(usage_log_filters, audit_log_filters, old_usage_is_pruned);
