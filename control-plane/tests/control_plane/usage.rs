//! The usage log over gRPC: enforcers report batches (stored at most once,
//! all or nothing), operators query them with filters, page by page.

use std::time::{Duration, SystemTime};

use ipgate_shared::{
    proto::{
        admin::v1::{
            CreateApiKeyRequest, CreateApiRequest, ExportUsageLogsRequest, QueryUsageLogsRequest,
            UsageLogEntry,
        },
        sync::v1::{ClientIpSource, Door, ReportEventsRequest, UsageEvent},
    },
    time,
};
use tonic::Code;
use tonic_types::StatusExt;

use crate::{
    common::{Admin, Db, OWNER, admin, sync_with},
    on_both_backends,
};

fn event(i: u32, key: &str, method: &str, status: u32, at: SystemTime) -> UsageEvent {
    UsageEvent {
        request_id: format!("req-{i}"),
        time: Some(time::to_timestamp(at)),
        api: "orders".into(),
        api_key_id: key.into(),
        method: method.into(),
        path: format!("/orders/{i}"),
        status_code: status,
        client_ip: "203.0.113.5".into(),
        reason: if status == 200 {
            "ALLOWED"
        } else {
            "IP_NOT_ALLOWED_KEY"
        }
        .into(),
        matched_label: String::new(),
        door: Door::Proxy.into(),
        client_ip_source: ClientIpSource::Peer.into(),
        ..Default::default()
    }
}

fn batch(events: Vec<UsageEvent>) -> ReportEventsRequest {
    ReportEventsRequest {
        batch_id: uuid::Uuid::new_v4().to_string(),
        enforcer_id: "enforcer-1".into(),
        events,
        dropped_allowed: 0,
        dropped_blocked: 0,
        first_dropped: None,
        last_dropped: None,
        strings: Vec::new(),
    }
}

async fn query(admin: &mut Admin, req: QueryUsageLogsRequest) -> (Vec<UsageLogEntry>, String) {
    let page = admin
        .query_usage_logs(req)
        .await
        .expect("query")
        .into_inner();
    (page.entries, page.next_page_token)
}

async fn reports_are_stored_once_and_queried_by_filter_and_page(db: Db) {
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
    let mut sync = sync_with(server.addr, Some(crate::common::ENFORCER)).await;

    // Event i happened i seconds after t0: i = 0 is the oldest.
    let t0 = SystemTime::now() - Duration::from_secs(60);
    let events: Vec<UsageEvent> = (0..12)
        .map(|i| {
            let (method, status) = if i % 3 == 0 {
                ("POST", 403)
            } else {
                ("GET", 200)
            };
            let key = if i % 2 == 0 { key.as_str() } else { "" };
            event(
                i,
                key,
                method,
                status,
                t0 + Duration::from_secs(u64::from(i)),
            )
        })
        .collect();
    let request = batch(events);
    let first = sync
        .report_events(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(!first.duplicate);
    let retry = sync.report_events(request).await.unwrap().into_inner();
    assert!(retry.duplicate);

    let (all, token) = query(&mut admin, QueryUsageLogsRequest::default()).await;
    assert_eq!(all.len(), 12);
    assert!(token.is_empty());
    let ids: Vec<&str> = all.iter().map(|e| e.request_id.as_str()).collect();
    let newest_first: Vec<String> = (0..12).rev().map(|i| format!("req-{i}")).collect();
    assert_eq!(ids, newest_first);
    assert_eq!(all[0].enforcer_id, "enforcer-1");

    let count = |req: QueryUsageLogsRequest| {
        let mut admin = admin.clone();
        async move { query(&mut admin, req).await.0.len() }
    };
    let by_key = QueryUsageLogsRequest {
        api_key_id: key.clone(),
        ..Default::default()
    };
    assert_eq!(count(by_key).await, 6);
    let by_method = QueryUsageLogsRequest {
        method: "post".into(),
        ..Default::default()
    };
    assert_eq!(count(by_method).await, 4);
    let by_status = QueryUsageLogsRequest {
        status_code: 403,
        ..Default::default()
    };
    assert_eq!(count(by_status).await, 4);
    // An API the tenant never had is not an empty log: NOT_FOUND.
    let by_api = QueryUsageLogsRequest {
        api: "billing".into(),
        ..Default::default()
    };
    let unknown = admin.clone().query_usage_logs(by_api).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    let combined = QueryUsageLogsRequest {
        api: "orders".into(),
        api_key_id: key.clone(),
        method: "GET".into(),
        status_code: 200,
        ..Default::default()
    };
    assert_eq!(count(combined).await, 4); // i = 2, 4, 8, 10

    // Pages of 5: 5 + 5 + 2, in order, then no token.
    let mut paged = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let req = QueryUsageLogsRequest {
            page_size: 5,
            page_token: token.clone(),
            ..Default::default()
        };
        let (entries, next) = query(&mut admin, req).await;
        pages += 1;
        paged.extend(entries.into_iter().map(|e| e.request_id));
        if next.is_empty() {
            break;
        }
        token = next;
    }
    assert_eq!(pages, 3);
    assert_eq!(paged, newest_first);

    for bad in [
        QueryUsageLogsRequest {
            page_token: "garbage".into(),
            ..Default::default()
        },
        QueryUsageLogsRequest {
            page_size: 1001,
            ..Default::default()
        },
        QueryUsageLogsRequest {
            status_code: 99,
            ..Default::default()
        },
    ] {
        let status = admin.query_usage_logs(bad).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
    server.shutdown().await.unwrap();
}

async fn a_bad_event_refuses_the_whole_batch(db: Db) {
    let server = db.start().await;
    let mut admin = admin(server.addr).await;
    let mut sync = sync_with(server.addr, Some(crate::common::ENFORCER)).await;
    let now = SystemTime::now();
    let mut broken = event(1, "", "GET", 200, now);
    broken.client_ip = "not-an-ip".into();
    let status = sync
        .report_events(batch(vec![event(0, "", "GET", 200, now), broken]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let bad = status.get_details_bad_request().expect("field violations");
    assert_eq!(bad.field_violations[0].field, "events[1].client_ip");
    let (entries, _) = query(&mut admin, QueryUsageLogsRequest::default()).await;
    assert!(entries.is_empty());

    // A batch of 1,000 bad events: the first are named, the rest counted,
    // and the answer stays small enough that the client keeps its
    // connection for its next call.
    let all_bad = (0..1000)
        .map(|i| {
            let mut e = event(i, "", "GET", 200, now);
            e.client_ip = format!("not-an-ip-{i}");
            e
        })
        .collect();
    let status = sync.report_events(batch(all_bad)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let bad = status.get_details_bad_request().expect("field violations");
    assert_eq!(bad.field_violations.len(), 20, "{bad:?}");
    assert_eq!(bad.field_violations[19].field, "events[19].client_ip");
    assert!(
        status
            .message()
            .ends_with("and 995 more bad fields (20 named in the details)"),
        "{}",
        status.message()
    );

    // Events for unknown APIs are kept (they show probing), admin tokens may not report.
    let mut unknown = event(2, "", "GET", 404, now);
    unknown.api = "no-such-api".into();
    unknown.reason = "API_NOT_FOUND".into();
    sync.report_events(batch(vec![unknown])).await.unwrap();
    let (entries, _) = query(&mut admin, QueryUsageLogsRequest::default()).await;
    assert_eq!(entries.len(), 1);
    let mut as_admin = sync_with(server.addr, Some(OWNER)).await;
    let refused = as_admin.report_events(batch(vec![])).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    server.shutdown().await.unwrap();
}

/// Each event's door comes back in the log, a query or an export filters
/// by it, and a bad door is a field violation. An event whose enforcer did
/// not name a door (or named one this build lacks) is kept, as `unknown`:
/// refusing it would drop its whole batch, and with it callers the lockout
/// preview must see.
async fn doors_are_stored_returned_filtered_and_exported(db: Db) {
    let server = db.start().await;
    let mut admin = admin(server.addr).await;
    let mut sync = sync_with(server.addr, Some(crate::common::ENFORCER)).await;
    admin
        .create_api(CreateApiRequest {
            slug: "orders".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let t0 = SystemTime::now() - Duration::from_secs(60);
    let doors = [
        Door::Proxy as i32,
        Door::Check as i32,
        Door::Unspecified as i32,
        99,
    ];
    let events = doors
        .iter()
        .zip(0..)
        .map(|(door, i)| UsageEvent {
            door: *door,
            ..event(i, "", "GET", 200, t0 + Duration::from_secs(u64::from(i)))
        })
        .collect();
    sync.report_events(batch(events))
        .await
        .expect("events without a known door are stored too");

    let (all, _) = query(&mut admin, QueryUsageLogsRequest::default()).await;
    let got: Vec<(&str, &str)> = all
        .iter()
        .map(|e| (e.request_id.as_str(), e.door.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("req-3", "unknown"),
            ("req-2", "unknown"),
            ("req-1", "check"),
            ("req-0", "proxy"),
        ]
    );
    let by_door = |door: &str| {
        let mut admin = admin.clone();
        let req = QueryUsageLogsRequest {
            door: door.into(),
            ..Default::default()
        };
        async move {
            let (entries, _) = query(&mut admin, req).await;
            entries
                .into_iter()
                .map(|e| e.request_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(by_door("check").await, ["req-1"]);
    assert_eq!(by_door("PROXY").await, ["req-0"], "any case, like reasons");
    assert_eq!(by_door("unknown").await, ["req-3", "req-2"]);
    assert!(by_door("auth_request").await.is_empty());

    let mut stream = admin
        .export_usage_logs(ExportUsageLogsRequest {
            door: "check".into(),
            ..Default::default()
        })
        .await
        .expect("export")
        .into_inner();
    let mut csv_text = String::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        csv_text.push_str(&chunk.csv);
    }
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let header = reader.headers().unwrap().clone();
    assert_eq!(header.get(11), Some("door"), "{header:?}");
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 1, "{csv_text}");
    assert_eq!((&rows[0][1], &rows[0][11]), ("req-1", "check"));

    // A bad door names the field and the doors there are, on both calls.
    let violation = |status: tonic::Status| {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        let bad = status.get_details_bad_request().expect("field violations");
        let v = &bad.field_violations[0];
        assert_eq!(v.field, "door");
        assert!(
            v.description.contains("\"nginx\" is not a door")
                && v.description
                    .contains("proxy, ext_authz, auth_request, check"),
            "{v:?}"
        );
    };
    violation(
        admin
            .query_usage_logs(QueryUsageLogsRequest {
                door: "nginx".into(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
    );
    violation(
        admin
            .export_usage_logs(ExportUsageLogsRequest {
                door: "nginx".into(),
                ..Default::default()
            })
            .await
            .expect_err("a bad door is refused before the export starts"),
    );
    server.shutdown().await.unwrap();
}

/// Where each event's client address came from comes back in the log
/// (`client_ip_source`), a query or an export filters by it (any case, `_`
/// for `-`), the CSV has it as its last column, and a bad one is a field
/// violation. An event whose enforcer did not say (or named a source this
/// build lacks) is kept, as `unknown`.
async fn client_ip_sources_are_stored_returned_filtered_and_exported(db: Db) {
    let server = db.start().await;
    let mut admin = admin(server.addr).await;
    let mut sync = sync_with(server.addr, Some(crate::common::ENFORCER)).await;
    admin
        .create_api(CreateApiRequest {
            slug: "orders".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let t0 = SystemTime::now() - Duration::from_secs(60);
    let sent = [
        (Door::Proxy, ClientIpSource::Peer as i32),
        (Door::Proxy, ClientIpSource::XForwardedFor as i32),
        (Door::Proxy, ClientIpSource::Malformed as i32),
        (Door::Check, ClientIpSource::Named as i32),
        (Door::Proxy, ClientIpSource::UnknownHop as i32),
        (Door::Proxy, ClientIpSource::Unspecified as i32),
        (Door::Proxy, 99),
    ];
    let events = sent
        .iter()
        .zip(0..)
        .map(|((door, source), i)| UsageEvent {
            door: *door as i32,
            client_ip_source: *source,
            ..event(i, "", "GET", 200, t0 + Duration::from_secs(u64::from(i)))
        })
        .collect();
    sync.report_events(batch(events))
        .await
        .expect("events without a known source are stored too");

    let (all, _) = query(&mut admin, QueryUsageLogsRequest::default()).await;
    let got: Vec<(&str, &str)> = all
        .iter()
        .map(|e| (e.request_id.as_str(), e.client_ip_source.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("req-6", "unknown"),
            ("req-5", "unknown"),
            ("req-4", "unknown-hop"),
            ("req-3", "named"),
            ("req-2", "malformed"),
            ("req-1", "x-forwarded-for"),
            ("req-0", "peer"),
        ]
    );
    let by_source = |source: &str| {
        let mut admin = admin.clone();
        let req = QueryUsageLogsRequest {
            client_ip_source: source.into(),
            ..Default::default()
        };
        async move {
            let (entries, _) = query(&mut admin, req).await;
            entries
                .into_iter()
                .map(|e| e.request_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(by_source("malformed").await, ["req-2"]);
    assert_eq!(
        by_source("X_FORWARDED_FOR").await,
        ["req-1"],
        "as the enum names it"
    );
    assert_eq!(by_source("Named").await, ["req-3"], "any case, like doors");
    assert_eq!(by_source("unknown").await, ["req-6", "req-5"]);
    assert_eq!(by_source("unknown-hop").await, ["req-4"]);
    assert!(by_source("too-few-hops").await.is_empty());

    let mut stream = admin
        .export_usage_logs(ExportUsageLogsRequest {
            client_ip_source: "malformed".into(),
            door: "proxy".into(),
            ..Default::default()
        })
        .await
        .expect("export")
        .into_inner();
    let mut csv_text = String::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        csv_text.push_str(&chunk.csv);
    }
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let header = reader.headers().unwrap().clone();
    // Appended last, so scripts that read columns by position keep working.
    assert_eq!(header.len(), 17, "{header:?}");
    assert_eq!(header.get(12), Some("client_ip_source"), "{header:?}");
    assert_eq!(header.get(13), Some("kind"), "{header:?}");
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 1, "{csv_text}");
    assert_eq!(
        (&rows[0][1], &rows[0][11], &rows[0][12]),
        ("req-2", "proxy", "malformed")
    );

    // A bad source names the field and the sources there are, on both calls.
    let violation = |status: tonic::Status| {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        let bad = status.get_details_bad_request().expect("field violations");
        assert_eq!(bad.field_violations.len(), 1, "{bad:?}");
        let v = &bad.field_violations[0];
        assert_eq!(v.field, "client_ip_source");
        assert!(
            v.description
                .contains("\"X-Real-IP\" is not a client-address source")
                && v.description.contains("peer, x-forwarded-for")
                && v.description.contains("too-few-hops, or unknown"),
            "{v:?}"
        );
    };
    violation(
        admin
            .query_usage_logs(QueryUsageLogsRequest {
                client_ip_source: "X-Real-IP".into(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
    );
    violation(
        admin
            .export_usage_logs(ExportUsageLogsRequest {
                client_ip_source: "X-Real-IP".into(),
                ..Default::default()
            })
            .await
            .expect_err("a bad source is refused before the export starts"),
    );
    server.shutdown().await.unwrap();
}

on_both_backends!(
    reports_are_stored_once_and_queried_by_filter_and_page,
    a_bad_event_refuses_the_whole_batch,
    doors_are_stored_returned_filtered_and_exported,
    client_ip_sources_are_stored_returned_filtered_and_exported,
);
