//! Sync-fault scenario 5 (docs/sync-protocol.md, "Faults, and the tests that hold them"): the control
//! plane is down for 60 s while an enforcer takes traffic. Once it is back,
//! every request of the outage — allowed and blocked, well within the
//! enforcer's default queue — is in the usage log exactly once, and no gap
//! is recorded.

use std::{
    collections::HashMap,
    time::{Duration, Instant, SystemTime},
};

use ipgate_shared::{proto::admin::v1::ExportUsageLogsRequest, time};
use ipgate_tests::{Backend, World, admin::export_csv, eventually};

/// Where the test's requests come from.
const LOCAL: &str = "127.0.0.1";
/// How long the control plane stays down.
const OUTAGE: Duration = Duration::from_secs(60);
/// Requests sent in each second of the outage: allowed, then blocked.
const ALLOWED_PER_SECOND: usize = 40;
const BLOCKED_PER_SECOND: usize = 15;

/// The request rows since `since`, by request id: (count, status code);
/// and the number of gap rows.
async fn rows_since(w: &World, since: SystemTime) -> (HashMap<String, (u32, u16)>, usize) {
    let csv = export_csv(
        &mut w.admin.clone(),
        ExportUsageLogsRequest {
            start_time: Some(time::to_timestamp(since)),
            ..Default::default()
        },
    )
    .await
    .expect("export the usage log");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header = reader.headers().expect("a header").clone();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no {name} column: {header:?}"))
    };
    let (kind, id, status) = (column("kind"), column("request_id"), column("status_code"));
    let mut requests = HashMap::new();
    let mut gaps = 0;
    for row in reader.records() {
        let row = row.expect("a CSV row");
        if &row[kind] == "dropped" {
            gaps += 1;
            continue;
        }
        let code = row[status].parse().expect("a status code");
        requests
            .entry(row[id].to_owned())
            .and_modify(|(n, _)| *n += 1)
            .or_insert((1, code));
    }
    (requests, gaps)
}

async fn a_60_second_outage_loses_no_usage_event(backend: Backend) {
    let mut w = World::start(&backend).await;
    let warm_up = w.call(LOCAL, &w.key).await;
    assert_eq!(warm_up.status, 200);
    w.logged(warm_up.header("x-request-id")).await;

    w.cp.kill();
    let away = SystemTime::now();
    let started = Instant::now();
    // Request id -> the status the caller saw.
    let mut sent: HashMap<String, u16> = HashMap::new();
    for second in 0..OUTAGE.as_secs() {
        for n in 0..ALLOWED_PER_SECOND + BLOCKED_PER_SECOND {
            let key = if n < ALLOWED_PER_SECOND {
                w.key.as_str()
            } else {
                ""
            };
            let res = w.call(LOCAL, key).await;
            let want_allowed = n < ALLOWED_PER_SECOND;
            assert_eq!(
                res.status == 200,
                want_allowed,
                "the enforcer decides alone: {}",
                res.status
            );
            sent.insert(res.header("x-request-id").to_owned(), res.status);
        }
        // One round a second, for the whole outage.
        let next = Duration::from_secs(second + 1);
        if let Some(wait) = next.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    let expected = OUTAGE.as_secs() as usize * (ALLOWED_PER_SECOND + BLOCKED_PER_SECOND);
    assert_eq!(sent.len(), expected, "every request got its own id");

    w.cp.restart();
    w.admin = w.cp.admin().await;
    let (rows, gaps) = eventually(
        Duration::from_secs(60),
        "every request of the outage in the usage log",
        || async {
            let (rows, gaps) = rows_since(&w, away).await;
            sent.keys()
                .all(|id| rows.contains_key(id))
                .then_some((rows, gaps))
        },
    )
    .await
    .0;
    assert_eq!(gaps, 0, "nothing was dropped");
    for (id, status) in &sent {
        assert_eq!(
            rows.get(id),
            Some(&(1, *status)),
            "request {id} is logged exactly once, with its status"
        );
    }
    assert_eq!(rows.len(), sent.len(), "no row the test did not send");
    // A late duplicate would show after the last batch is in.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (again, _) = rows_since(&w, away).await;
    assert_eq!(again.len(), sent.len());
    assert!(again.values().all(|(n, _)| *n == 1), "no duplicate rows");
}

ipgate_tests::on_both_backends!(a_60_second_outage_loses_no_usage_event);
