//! The usage log's filters (reason groups, client address or CIDR, time
//! range), its CSV export, and the audit log's filters and pages.

use std::time::{Duration, SystemTime};

use ipgate_shared::{
    proto::admin::v1::{
        CreateApiKeyRequest, CreateApiRequest, DeleteApiRequest, ExportUsageLogsRequest,
        ListAuditEventsRequest, QueryUsageLogsRequest, TokenRole, UpdateApiRequest,
    },
    time,
};
use tonic::Code;

use crate::{
    common::{Admin, Db, ENFORCER, admin, admin_with, code, new_token, report, usage_event},
    on_both_backends,
};

async fn request_ids(admin: &Admin, req: QueryUsageLogsRequest) -> Vec<String> {
    let mut admin = admin.clone();
    let mut ids = Vec::new();
    let mut req = req;
    loop {
        let page = admin
            .query_usage_logs(req.clone())
            .await
            .unwrap()
            .into_inner();
        ids.extend(page.entries.into_iter().map(|e| e.request_id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        req.page_token = page.next_page_token;
    }
}

async fn usage_queries_filter_by_reason_address_and_time(db: Db) {
    let server = db.start().await;
    let mut admin = admin(server.addr).await;
    admin
        .create_api(CreateApiRequest {
            slug: "orders".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let t0 = SystemTime::now() - Duration::from_secs(3600);
    let at = |minutes: u64| t0 + Duration::from_secs(60 * minutes);
    let rows = [
        ("a", "203.0.113.5", "ALLOWED", 0),
        ("b", "203.0.113.200", "WOULD_BLOCK_IP", 1),
        ("c", "198.51.100.7", "IP_NOT_ALLOWED_KEY", 2),
        ("d", "2001:db8::1", "ALLOWED", 3),
        ("e", "2001:db8:1::1", "INVALID_API_KEY", 4),
        ("f", "::ffff:203.0.113.9", "IP_NOT_ALLOWED_API", 5),
        ("g", "203.0.114.1", "ALLOWED", 6),
    ];
    let events = rows
        .iter()
        .map(|(id, ip, reason, minute)| {
            let mut e = usage_event("orders", "", ip, reason, at(*minute));
            e.request_id = (*id).into();
            e
        })
        .collect();
    report(server.addr, ENFORCER, events).await;

    let q = |reason: &str, client_ip: &str| QueryUsageLogsRequest {
        reason: reason.into(),
        client_ip: client_ip.into(),
        page_size: 2,
        ..Default::default()
    };
    assert_eq!(
        request_ids(&admin, q("", "")).await,
        ["g", "f", "e", "d", "c", "b", "a"]
    );
    assert_eq!(
        request_ids(&admin, q("ALLOWED_ANY", "")).await,
        ["g", "d", "b", "a"]
    );
    assert_eq!(
        request_ids(&admin, q("blocked_any", "")).await,
        ["f", "e", "c"]
    );
    assert_eq!(
        request_ids(&admin, q("IP_NOT_ALLOWED_KEY", "")).await,
        ["c"]
    );
    assert_eq!(
        request_ids(&admin, q("", "203.0.113.0/24")).await,
        ["f", "b", "a"]
    );
    assert_eq!(request_ids(&admin, q("", "203.0.113.9")).await, ["f"]);
    assert_eq!(
        request_ids(&admin, q("", "::ffff:203.0.113.5")).await,
        ["a"]
    );
    assert_eq!(request_ids(&admin, q("", "2001:db8::/48")).await, ["d"]);
    assert_eq!(
        request_ids(&admin, q("", "2001:db8::/32")).await,
        ["e", "d"]
    );
    assert_eq!(
        request_ids(&admin, q("ALLOWED", "203.0.112.0/22")).await,
        ["g", "a"]
    );
    let range = QueryUsageLogsRequest {
        start_time: Some(time::to_timestamp(at(2))),
        end_time: Some(time::to_timestamp(at(5))),
        ..Default::default()
    };
    assert_eq!(request_ids(&admin, range).await, ["e", "d", "c"]);
    for bad in [q("NOPE", ""), q("", "203.0.113.0/33"), q("", "host")] {
        assert_eq!(
            code(admin.query_usage_logs(bad).await),
            Code::InvalidArgument
        );
    }
    let backwards = QueryUsageLogsRequest {
        start_time: Some(time::to_timestamp(at(5))),
        end_time: Some(time::to_timestamp(at(2))),
        ..Default::default()
    };
    assert_eq!(
        code(admin.query_usage_logs(backwards).await),
        Code::InvalidArgument
    );

    // Naming an API or a key the tenant never had is a typo: NOT_FOUND,
    // for a query and an export alike.
    let typo = QueryUsageLogsRequest {
        api: "orderz".into(),
        ..Default::default()
    };
    let status = admin.query_usage_logs(typo).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("orderz"), "{status:?}");
    let no_key = QueryUsageLogsRequest {
        api_key_id: "k_nosuchkey0000000000".into(),
        ..Default::default()
    };
    assert_eq!(code(admin.query_usage_logs(no_key).await), Code::NotFound);
    let export = ExportUsageLogsRequest {
        api: "orderz".into(),
        ..Default::default()
    };
    assert_eq!(code(admin.export_usage_logs(export).await), Code::NotFound);
    // A deleted API's log stays readable by its name.
    admin
        .delete_api(DeleteApiRequest {
            slug: "orders".into(),
            ..Default::default()
        })
        .await
        .expect("delete the API");
    let deleted = QueryUsageLogsRequest {
        api: "orders".into(),
        ..Default::default()
    };
    assert_eq!(request_ids(&admin, deleted).await.len(), rows.len());
    server.shutdown().await.unwrap();
}

/// The export parses back with a CSV reader: a header row, every row once,
/// newest first, quoting round-tripping and formulas neutralised; chunks
/// end at row ends.
async fn usage_export_is_csv(db: Db) {
    const ROWS: usize = 12_000;
    let server = db.start().await;
    let mut admin = admin(server.addr).await;
    admin
        .create_api(CreateApiRequest {
            slug: "orders".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let key = admin
        .create_api_key(CreateApiKeyRequest {
            api: "orders".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .key
        .unwrap()
        .id;
    let t0 = SystemTime::now() - Duration::from_secs(7200);
    let mut events: Vec<_> = (0..ROWS)
        .map(|i| {
            let reason = if i % 2 == 0 {
                "ALLOWED"
            } else {
                "IP_NOT_ALLOWED_KEY"
            };
            let mut e = usage_event(
                "orders",
                &key,
                "203.0.113.5",
                reason,
                t0 + Duration::from_millis(i as u64),
            );
            e.request_id = format!("req-{i:05}");
            e
        })
        .collect();
    let tricky = SystemTime::now();
    let mut formula = usage_event("orders", &key, "2001:db8::1", "ALLOWED", tricky);
    formula.request_id = "tricky".into();
    formula.matched_label = "=cmd()".into();
    formula.path = "/a,b/\"quoted\"/line\nbreak".into();
    formula.method = "@GET".into();
    events.push(formula);
    report(server.addr, ENFORCER, events).await;

    let export = |req: ExportUsageLogsRequest| {
        let mut admin = admin.clone();
        async move {
            let mut stream = admin.export_usage_logs(req).await.unwrap().into_inner();
            let mut chunks = Vec::new();
            while let Some(chunk) = stream.message().await.unwrap() {
                chunks.push(chunk.csv);
            }
            chunks
        }
    };
    let chunks = export(ExportUsageLogsRequest::default()).await;
    assert!(chunks.len() > 1, "a big export comes in several chunks");
    for chunk in &chunks {
        assert!(chunk.ends_with("\r\n"), "chunks end at row ends");
        assert!(chunk.len() < 512 * 1024);
    }
    let text = chunks.concat();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        header,
        [
            "time",
            "request_id",
            "api",
            "api_key_id",
            "method",
            "path",
            "status_code",
            "client_ip",
            "reason",
            "matched_label",
            "enforcer_id",
            "door",
            "client_ip_source",
            "kind",
            "dropped_allowed",
            "dropped_blocked",
            "dropped_until"
        ]
    );
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), ROWS + 1);
    let first = &records[0];
    assert_eq!(&first[1], "tricky");
    assert_eq!(&first[4], "'@GET");
    assert_eq!(&first[5], "/a,b/\"quoted\"/line\nbreak");
    assert_eq!(&first[9], "'=cmd()");
    assert_eq!(&first[7], "2001:db8::1");
    assert_eq!(
        &first[0],
        humantime::format_rfc3339_millis(time::from_millis(time::to_millis(tricky))).to_string()
    );
    assert_eq!(&records[1][1], format!("req-{:05}", ROWS - 1));
    assert_eq!(&records[ROWS][1], "req-00000");
    assert_eq!(&records[ROWS][6], "200");
    assert_eq!(&records[ROWS][10], "enforcer-1");
    assert_eq!(&records[ROWS][11], "check");
    assert_eq!(&records[ROWS][12], "named");
    // A request row: its kind, and no gap counts.
    assert_eq!(&records[ROWS][13], "request");
    let gap_cells: Vec<&str> = records[ROWS].iter().skip(14).collect();
    assert_eq!(gap_cells, ["", "", ""]);

    // The query's filters apply.
    let blocked = export(ExportUsageLogsRequest {
        status_code: 403,
        ..Default::default()
    })
    .await
    .concat();
    let rows = csv::Reader::from_reader(blocked.as_bytes())
        .records()
        .count();
    assert_eq!(rows, ROWS / 2);
    // An API without requests exports just the header.
    admin
        .clone()
        .create_api(CreateApiRequest {
            slug: "billing".into(),
            ..Default::default()
        })
        .await
        .expect("create an API");
    let none = export(ExportUsageLogsRequest {
        api: "billing".into(),
        ..Default::default()
    })
    .await
    .concat();
    assert_eq!(none.lines().count(), 1, "just the header: {none:?}");
    let bad = admin
        .export_usage_logs(ExportUsageLogsRequest {
            reason: "NOPE".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(bad.err().map(|s| s.code()), Some(Code::InvalidArgument));
    server.shutdown().await.unwrap();
}

async fn audit_events_filter_and_page(db: Db) {
    let server = db.start().await;
    let mut owner = admin(server.addr).await;
    let editor_secret = new_token(&mut owner, TokenRole::Editor).await;
    let mut editor = admin_with(server.addr, Some(&editor_secret)).await;
    for slug in ["a", "b", "c"] {
        owner
            .create_api(CreateApiRequest {
                slug: slug.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    // Audit times are milliseconds: keep `middle` clear of both sides.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let middle = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    for slug in ["a", "b"] {
        editor
            .update_api(UpdateApiRequest {
                slug: slug.into(),
                name: Some(format!("API {slug}")),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let list = |req: ListAuditEventsRequest| {
        let mut owner = owner.clone();
        async move {
            let mut req = req;
            let mut all = Vec::new();
            loop {
                let page = owner
                    .list_audit_events(req.clone())
                    .await
                    .unwrap()
                    .into_inner();
                all.extend(page.events);
                if page.next_page_token.is_empty() {
                    return all;
                }
                req.page_token = page.next_page_token;
            }
        }
    };
    let apis = list(ListAuditEventsRequest {
        object_type: "api".into(),
        page_size: 2,
        ..Default::default()
    })
    .await;
    let seen: Vec<(String, String)> = apis
        .iter()
        .map(|e| (e.action.clone(), e.object_id.clone()))
        .collect();
    let expected: Vec<(String, String)> = [
        ("api.update", "b"),
        ("api.update", "a"),
        ("api.create", "c"),
        ("api.create", "b"),
        ("api.create", "a"),
    ]
    .iter()
    .map(|(a, o)| ((*a).to_owned(), (*o).to_owned()))
    .collect();
    assert_eq!(seen, expected);
    assert!(apis.windows(2).all(|w| w[0].revision > w[1].revision));
    let editor_id = apis[0].actor_token_id.clone();
    assert_ne!(editor_id, apis[2].actor_token_id);
    let by_editor = list(ListAuditEventsRequest {
        actor_token_id: editor_id,
        ..Default::default()
    })
    .await;
    assert_eq!(by_editor.len(), 2);
    let of_a = list(ListAuditEventsRequest {
        object_type: "api".into(),
        object_id: "a".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(of_a.len(), 2);
    assert!(of_a[0].before_json.contains("\"name\":\"a\""));
    assert!(of_a[0].after_json.contains("\"name\":\"API a\""));
    let since = list(ListAuditEventsRequest {
        start_time: Some(time::to_timestamp(middle)),
        ..Default::default()
    })
    .await;
    assert_eq!(since.len(), 2);
    let until = list(ListAuditEventsRequest {
        object_type: "api".into(),
        end_time: Some(time::to_timestamp(middle)),
        ..Default::default()
    })
    .await;
    assert_eq!(until.len(), 3);
    let bad = owner
        .list_audit_events(ListAuditEventsRequest {
            object_type: "widget".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(bad), Code::InvalidArgument);
    server.shutdown().await.unwrap();
}

on_both_backends!(
    usage_queries_filter_by_reason_address_and_time,
    usage_export_is_csv,
    audit_events_filter_and_page,
);
