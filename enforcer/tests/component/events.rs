//! Usage events: every decision reaches `ReportEvents`, failed batches are
//! retried with the same id, and shutdown flushes.

use std::collections::HashSet;

use crate::support::*;

#[tokio::test]
async fn decisions_reach_report_events_with_their_fields() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (running, _session) = synced(&mut fake, &world, &[]).await;

    check_with(&running, &world.office.secret, "203.0.113.7", "req-allowed").await;
    check_with(&running, &world.office.secret, "198.51.100.1", "req-denied").await;
    eventually("both events at the control plane", || async {
        fake.events().len() >= 2
    })
    .await;

    let events = fake.events();
    let allowed = events
        .iter()
        .find(|e| e.request_id == "req-allowed")
        .unwrap();
    assert_eq!(allowed.api, "orders");
    assert_eq!(allowed.api_key_id, world.office.id.to_string());
    assert_eq!(allowed.method, "GET");
    assert_eq!(allowed.path, "/orders/7");
    assert_eq!(allowed.status_code, 200);
    assert_eq!(allowed.client_ip, "203.0.113.7");
    assert_eq!(allowed.reason, "ALLOWED");
    assert_eq!(allowed.matched_label, "office");
    assert!(allowed.time.is_some());

    let denied = events
        .iter()
        .find(|e| e.request_id == "req-denied")
        .unwrap();
    assert_eq!(denied.status_code, 403);
    assert_eq!(denied.reason, "IP_NOT_ALLOWED_KEY");
    assert_eq!(denied.client_ip, "198.51.100.1");
    assert_eq!(denied.matched_label, "");

    let report = fake.reports().into_iter().find(|r| r.accepted).unwrap();
    assert_eq!(report.request.enforcer_id, ENFORCER_ID);
    assert_eq!(
        report.authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert!(uuid::Uuid::parse_str(&report.request.batch_id).is_ok());
    assert_eq!(
        (
            report.request.dropped_allowed,
            report.request.dropped_blocked
        ),
        (0, 0)
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failed_batch_is_retried_with_the_same_id() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (running, _session) = synced(&mut fake, &world, &[]).await;
    fake.fail_reports(2);

    check_with(
        &running,
        &world.office.secret,
        "198.51.100.1",
        "req-retried",
    )
    .await;
    eventually("the batch to be delivered", || async {
        fake.events().iter().any(|e| e.request_id == "req-retried")
    })
    .await;

    let attempts: Vec<_> = fake
        .reports()
        .into_iter()
        .filter(|r| {
            r.request
                .events
                .iter()
                .any(|e| e.request_id == "req-retried")
        })
        .collect();
    assert_eq!(attempts.len(), 3, "two failures, then success");
    let ids: HashSet<_> = attempts
        .iter()
        .map(|r| r.request.batch_id.clone())
        .collect();
    assert_eq!(ids.len(), 1, "every retry reuses the batch id");
    assert!(attempts[2].accepted && !attempts[0].accepted && !attempts[1].accepted);
    assert_eq!(attempts[0].request.events, attempts[2].request.events);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_flushes_queued_events() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (running, _session) = synced(&mut fake, &world, &[]).await;
    for i in 0..50 {
        check_with(&running, "", "203.0.113.7", &format!("req-{i}")).await;
    }
    running.shutdown().await.unwrap();
    let delivered: HashSet<_> = fake.events().into_iter().map(|e| e.request_id).collect();
    for i in 0..50 {
        assert!(
            delivered.contains(&format!("req-{i}")),
            "req-{i} was lost on shutdown"
        );
    }
}
