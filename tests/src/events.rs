//! Usage events sent the way an enforcer sends them — `ReportEvents` with an
//! enforcer token — for tests that need a usage log with chosen contents
//! (times in the past, many rows, awkward text).

use std::time::SystemTime;

use ipgate_shared::proto::sync::v1::{ReportEventsRequest, UsageEvent};

use crate::{admin::timestamp, process::SyncClient};

/// Enforcer id the synthetic events are reported under.
pub const REPORTER: &str = "e2e-reporter";

/// One event; change the other fields with struct update syntax.
pub fn event(api: &str, key_id: &str, client_ip: &str, time: SystemTime) -> UsageEvent {
    UsageEvent {
        request_id: uuid::Uuid::new_v4().simple().to_string(),
        time: Some(timestamp(time)),
        api: api.to_owned(),
        api_key_id: key_id.to_owned(),
        method: "GET".to_owned(),
        path: "/".to_owned(),
        status_code: 200,
        client_ip: client_ip.to_owned(),
        reason: "ALLOWED".to_owned(),
        matched_label: String::new(),
        door: ipgate_shared::proto::sync::v1::Door::Check.into(),
        client_ip_source: ipgate_shared::proto::sync::v1::ClientIpSource::Named.into(),
        ..UsageEvent::default()
    }
}

/// Stores `events` as one batch.
pub async fn report(sync: &mut SyncClient, events: Vec<UsageEvent>) {
    sync.report_events(ReportEventsRequest {
        batch_id: uuid::Uuid::new_v4().to_string(),
        enforcer_id: REPORTER.to_owned(),
        events,
        dropped_allowed: 0,
        dropped_blocked: 0,
        first_dropped: None,
        last_dropped: None,
        strings: Vec::new(),
    })
    .await
    .expect("report usage events");
}
