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
    // Text travels once a batch, in its table: events name it by reference.
    for report in fake.reports().into_iter().filter(|r| r.accepted) {
        let table = &report.request.strings;
        let distinct: HashSet<&String> = table.iter().collect();
        assert_eq!(distinct.len(), table.len(), "each text once: {table:?}");
        for e in &report.request.events {
            assert_eq!((e.api.as_str(), e.path.as_str()), ("", ""));
            assert_eq!(table[e.api_ref as usize - 1], "orders");
            assert_eq!(table[e.path_ref as usize - 1], "/orders/7");
        }
    }
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

/// Decides one request in-process (no door), as `ipgate dev` could.
fn decide(running: &ipgate_enforcer::Running, ip: &str, request_id: &str) {
    running.enforcer().decide(ipgate_enforcer::DecisionInput {
        door: ipgate_shared::Door::Check,
        client_ip_source: ipgate_shared::ClientIpSource::Named,
        api: "orders",
        key: ipgate_shared::PresentedKey::Missing,
        client_ip: ip.parse().unwrap(),
        method: "GET",
        path: "/",
        request_id: Some(request_id),
    });
}

/// Holds the first batch in retry so later events wait in the queue.
async fn stall_reports(fake: &FakeControlPlane, running: &ipgate_enforcer::Running) {
    fake.fail_reports(usize::MAX);
    decide(running, "203.0.113.7", "first");
    eventually("the first batch to fail", || async {
        !fake.reports().is_empty()
    })
    .await;
}

#[tokio::test]
async fn batches_hold_at_most_a_thousand_events() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (running, _session) = synced(&mut fake, &world, &["--event-queue-capacity", "5000"]).await;
    stall_reports(&fake, &running).await;
    for i in 0..2500 {
        decide(&running, "203.0.113.7", &format!("bulk-{i}"));
    }
    fake.fail_reports(0);
    eventually("every event delivered", || async {
        fake.events().len() == 2501
    })
    .await;
    let sizes: Vec<_> = fake
        .reports()
        .iter()
        .map(|r| r.request.events.len())
        .collect();
    assert!(sizes.iter().all(|&n| n <= 1000), "{sizes:?}");
    assert!(sizes.contains(&1000), "{sizes:?}");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_overflow_drops_allowed_events_first_and_counts_every_drop() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (running, _session) = synced(&mut fake, &world, &["--event-queue-capacity", "10"]).await;
    stall_reports(&fake, &running).await;
    // With a key from the right network: allowed. They fill nine tenths.
    for i in 0..20 {
        running.enforcer().decide(ipgate_enforcer::DecisionInput {
            door: ipgate_shared::Door::Check,
            client_ip_source: ipgate_shared::ClientIpSource::Named,
            api: "orders",
            key: ipgate_shared::PresentedKey::One(&world.office.secret),
            client_ip: "203.0.113.7".parse().unwrap(),
            method: "GET",
            path: "/",
            request_id: Some(&format!("allowed-{i}")),
        });
    }
    // No key: 401, a blocked event. The last tenth is theirs.
    for i in 0..8 {
        decide(&running, "203.0.113.7", &format!("blocked-{i}"));
    }
    fake.fail_reports(0);
    eventually("the queued events delivered", || async {
        fake.events().len() == 1 + 10
    })
    .await;
    let delivered = fake.reports().into_iter().filter(|r| r.accepted);
    let dropped = delivered.fold((0, 0), |(a, b), r| {
        (a + r.request.dropped_allowed, b + r.request.dropped_blocked)
    });
    assert_eq!(
        dropped,
        (20 - 9, 8 - 1),
        "(allowed, blocked) drops reported"
    );
    running.shutdown().await.unwrap();
}
