//! When the enforcer's event queue overflows, the loss shows: with the
//! control plane stopped, an enforcer with `--event-queue-capacity 10` takes
//! more requests than its queue holds, and once the control plane is back
//! the usage log holds one gap entry (kind `dropped`) naming the enforcer,
//! the window of its drops and exactly how many allowed and blocked requests
//! it dropped — in `QueryUsageLogs` and in the CSV export — and the request
//! rows plus the dropped counts add up to the requests sent.

use std::time::{Duration, SystemTime};

use ipgate_shared::{
    proto::admin::v1::{ExportUsageLogsRequest, QueryUsageLogsRequest, UsageLogEntry},
    time,
};
use ipgate_tests::{Backend, World, admin::export_csv, eventually, process::AdminClient};

/// Where the test's requests come from.
const LOCAL: &str = "127.0.0.1";

/// Events the enforcer's queue holds in all.
const CAPACITY: u64 = 10;
/// Allowed events fill at most nine tenths; the rest is kept for blocked.
const ALLOWED_FIT: u64 = CAPACITY - CAPACITY / 10;
/// Allowed and blocked requests sent while the control plane is away,
/// allowed first: they fill their share, and blocked ones still find room.
const ALLOWED_SENT: u64 = 12;
const BLOCKED_SENT: u64 = 8;
/// What cannot fit.
const ALLOWED_DROPPED: u64 = ALLOWED_SENT - ALLOWED_FIT;
const BLOCKED_DROPPED: u64 = BLOCKED_SENT - (CAPACITY - ALLOWED_FIT);

async fn all_entries(admin: &mut AdminClient, filter: QueryUsageLogsRequest) -> Vec<UsageLogEntry> {
    let mut entries = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = admin
            .query_usage_logs(QueryUsageLogsRequest {
                page_size: 7,
                page_token,
                ..filter.clone()
            })
            .await
            .expect("query usage logs")
            .into_inner();
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            return entries;
        }
        page_token = page.next_page_token;
    }
}

fn at(entry: &UsageLogEntry) -> SystemTime {
    time::from_timestamp(entry.time.as_ref().expect("a time")).expect("a valid time")
}

async fn a_full_queue_leaves_a_gap_with_exact_counts(backend: Backend) {
    let capacity = CAPACITY.to_string();
    let mut w = World::start_with_args(&backend, &[], &["--event-queue-capacity", &capacity]).await;
    // Warm up: the enforcer is synced (World waits for that), and a
    // request after that is in the log, so the queues hold nothing older.
    let warm_up = w.call(LOCAL, &w.key).await;
    assert_eq!(warm_up.status, 200);
    w.logged(warm_up.header("x-request-id")).await;

    // The control plane goes away. One request first: the reporter takes it
    // into a batch within 200 ms and keeps retrying that batch (and says
    // so), so the requests after it meet an empty queue of exactly CAPACITY.
    const RETRYING: &str = "could not deliver usage batch";
    let retries_before = w.enforcer.log().matches(RETRYING).count();
    w.cp.kill();
    let away = SystemTime::now();
    assert_eq!(
        w.call(LOCAL, &w.key).await.status,
        200,
        "the enforcer decides alone"
    );
    eventually(Duration::from_secs(10), "the reporter to retry", || async {
        (w.enforcer.log().matches(RETRYING).count() > retries_before).then_some(())
    })
    .await;
    for _ in 0..ALLOWED_SENT {
        assert_eq!(w.call(LOCAL, &w.key).await.status, 200);
    }
    for _ in 0..BLOCKED_SENT {
        let res = w.call(LOCAL, "").await;
        assert!(res.status >= 400, "no key is refused: {}", res.status);
    }
    let sent_until = SystemTime::now();
    let sent = 1 + ALLOWED_SENT + BLOCKED_SENT;

    w.cp.restart();
    let mut admin = w.cp.admin().await;
    let since = QueryUsageLogsRequest {
        start_time: Some(time::to_timestamp(away)),
        ..Default::default()
    };
    // Everything that was queued arrives, and the gap with it.
    let delivered = 1 + CAPACITY;
    let (entries, _) = eventually(
        Duration::from_secs(30),
        "the queued events and the gap",
        || {
            let mut admin = admin.clone();
            let since = since.clone();
            async move {
                let entries = all_entries(&mut admin, since).await;
                let requests = entries.iter().filter(|e| e.kind == "request").count() as u64;
                let gaps = entries.iter().filter(|e| e.kind == "dropped").count();
                (requests == delivered && gaps == 1).then_some(entries)
            }
        },
    )
    .await;

    // Newest first, the gap placed at its first drop among the requests.
    let times: Vec<SystemTime> = entries.iter().map(at).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {entries:#?}"
    );
    let gap = entries
        .iter()
        .find(|e| e.kind == "dropped")
        .expect("a gap entry");
    let dropped = gap.dropped.as_ref().expect("the gap's counts");
    assert_eq!(
        (dropped.allowed, dropped.blocked),
        (ALLOWED_DROPPED, BLOCKED_DROPPED),
        "{gap:#?}"
    );
    assert_eq!(gap.enforcer_id, w.enforcer.id);
    assert_eq!(gap.time, dropped.first_time);
    let first = at(gap);
    let last = time::from_timestamp(dropped.last_time.as_ref().expect("last")).expect("time");
    let ms = Duration::from_millis(1);
    assert!(
        away - ms <= first && first <= last && last <= sent_until + ms,
        "the drops happened while the control plane was away: {first:?}..{last:?}"
    );
    assert!(gap.request_id.is_empty() && gap.api.is_empty() && gap.reason.is_empty());
    let requests = entries.iter().filter(|e| e.kind == "request").count() as u64;
    assert_eq!(
        requests + dropped.allowed + dropped.blocked,
        sent,
        "rows + dropped = requests sent"
    );
    let allowed_rows = entries
        .iter()
        .filter(|e| e.kind == "request" && e.status_code == 200)
        .count() as u64;
    assert_eq!(allowed_rows + dropped.allowed, 1 + ALLOWED_SENT);

    // Filters: the enforcer's own gap passes its enforcer filter, a reason
    // class it dropped, and an API filter (which cannot split the drops);
    // another enforcer's filter does not.
    let gaps_for = |filter: QueryUsageLogsRequest| {
        let mut admin = admin.clone();
        async move {
            all_entries(&mut admin, filter)
                .await
                .into_iter()
                .filter(|e| e.kind == "dropped")
                .count()
        }
    };
    let ours = QueryUsageLogsRequest {
        enforcer_id: w.enforcer.id.clone(),
        ..since.clone()
    };
    assert_eq!(gaps_for(ours.clone()).await, 1);
    let not_ours = QueryUsageLogsRequest {
        enforcer_id: "someone-else".into(),
        ..since.clone()
    };
    assert_eq!(all_entries(&mut admin.clone(), not_ours).await.len(), 0);
    for reason in ["ALLOWED_ANY", "BLOCKED_ANY"] {
        let by_reason = QueryUsageLogsRequest {
            reason: reason.into(),
            ..ours.clone()
        };
        assert_eq!(gaps_for(by_reason).await, 1, "{reason}");
    }
    let by_api = QueryUsageLogsRequest {
        api: "orders".into(),
        ..ours.clone()
    };
    assert_eq!(gaps_for(by_api).await, 1);
    let before = QueryUsageLogsRequest {
        end_time: Some(time::to_timestamp(away - Duration::from_secs(1))),
        ..Default::default()
    };
    assert_eq!(gaps_for(before).await, 0, "a time range before the gap");
    let only_gaps = QueryUsageLogsRequest {
        kind: "dropped".into(),
        ..Default::default()
    };
    assert_eq!(
        all_entries(&mut admin.clone(), only_gaps).await,
        std::slice::from_ref(gap),
        "the kind filter finds the gap alone"
    );

    // The CSV says the same, in a row of kind `dropped`.
    let csv = export_csv(
        &mut admin,
        ExportUsageLogsRequest {
            start_time: Some(time::to_timestamp(away)),
            ..Default::default()
        },
    )
    .await
    .expect("export");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header = reader.headers().expect("header").clone();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no {name} column: {header:?}"))
    };
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("a row")).collect();
    let gaps: Vec<&csv::StringRecord> = rows
        .iter()
        .filter(|r| &r[column("kind")] == "dropped")
        .collect();
    assert_eq!(gaps.len(), 1, "{csv}");
    let row = gaps[0];
    assert_eq!(&row[column("enforcer_id")], w.enforcer.id);
    assert_eq!(&row[column("dropped_allowed")], ALLOWED_DROPPED.to_string());
    assert_eq!(&row[column("dropped_blocked")], BLOCKED_DROPPED.to_string());
    let rfc3339 = |t: SystemTime| humantime::format_rfc3339_millis(t).to_string();
    assert_eq!(&row[column("time")], rfc3339(first));
    assert_eq!(&row[column("dropped_until")], rfc3339(last));
    assert_eq!(&row[column("request_id")], "");
    let request_rows = rows
        .iter()
        .filter(|r| &r[column("kind")] == "request")
        .count() as u64;
    assert_eq!(request_rows, requests);
    assert_eq!(
        request_rows + ALLOWED_DROPPED + BLOCKED_DROPPED,
        sent,
        "CSV rows + dropped = requests sent"
    );
}

ipgate_tests::on_both_backends!(a_full_queue_leaves_a_gap_with_exact_counts);
