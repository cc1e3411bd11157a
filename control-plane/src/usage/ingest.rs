//! `ReportEventsRequest` -> a validated [`UsageBatch`]: nothing of a batch
//! is stored unless every event in it is valid.

use std::time::SystemTime;

use ipgate_shared::{
    EnforcerId,
    proto::sync::v1 as wire,
    time,
    usage::{self, UsageEvent},
};

use crate::{invalid::InvalidRequest, store::UsageBatch};

/// Most events one batch may carry (enforcers send at most 1,000).
pub const MAX_BATCH_EVENTS: usize = 10_000;

/// Validates a batch; each bad event is named by its index and field.
pub fn batch(
    req: wire::ReportEventsRequest,
    now: SystemTime,
) -> Result<UsageBatch, InvalidRequest> {
    let wire::ReportEventsRequest {
        batch_id,
        enforcer_id,
        events,
        dropped_allowed,
        dropped_blocked,
        first_dropped,
        last_dropped,
        strings,
    } = req;
    let mut bad = InvalidRequest::default();
    let id = bad.check(
        "batch_id",
        uuid::Uuid::parse_str(&batch_id).map_err(|_| {
            format!(
                "{batch_id:?} is not a UUID; give each batch a fresh one and reuse it on retries"
            )
        }),
    );
    let enforcer = bad.check("enforcer_id", enforcer_id.parse::<EnforcerId>());
    if events.len() > MAX_BATCH_EVENTS {
        bad.add(
            "events",
            format!(
                "{} events in one batch; at most {MAX_BATCH_EVENTS}",
                events.len()
            ),
        );
    }
    let events: Vec<Option<UsageEvent>> = events
        .into_iter()
        .enumerate()
        .map(|(i, mut e)| {
            usage::resolve_refs(&strings, &mut e)
                .and_then(|()| UsageEvent::try_from(e))
                .map_err(|err| bad.add(format!("events[{i}].{}", err.field), err.message))
                .ok()
        })
        .collect();
    bad.or_value(|| {
        Some(UsageBatch {
            id: id?,
            enforcer: enforcer?,
            events: events.into_iter().collect::<Option<_>>()?,
            dropped_allowed,
            dropped_blocked,
            dropped_window: drop_window(
                dropped_allowed > 0 || dropped_blocked > 0,
                first_dropped.as_ref(),
                last_dropped.as_ref(),
                now,
            ),
            received_at: now,
        })
    })
}

/// When a batch's drops happened: `None` without drops. A time the enforcer
/// left unset (one built before drop windows) or could not give is the
/// arrival time; an inverted window is put the right way round rather than
/// refused, since refusing would lose the counts too.
fn drop_window(
    dropped: bool,
    first: Option<&prost_types::Timestamp>,
    last: Option<&prost_types::Timestamp>,
    now: SystemTime,
) -> Option<(SystemTime, SystemTime)> {
    if !dropped {
        return None;
    }
    let read = |t: Option<&prost_types::Timestamp>| t.and_then(time::from_timestamp);
    let (first, last) = match (read(first), read(last)) {
        (Some(f), Some(l)) => (f, l),
        (Some(t), None) | (None, Some(t)) => (t, t),
        (None, None) => (now, now),
    };
    Some((first.min(last), first.max(last)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> wire::UsageEvent {
        wire::UsageEvent {
            request_id: "r1".into(),
            time: Some(ipgate_shared::time::to_timestamp(SystemTime::now())),
            api: "orders".into(),
            api_key_id: String::new(),
            method: "GET".into(),
            path: "/".into(),
            status_code: 200,
            client_ip: "203.0.113.5".into(),
            reason: "ALLOWED".into(),
            matched_label: String::new(),
            door: wire::Door::Proxy.into(),
            client_ip_source: wire::ClientIpSource::Peer.into(),
            ..Default::default()
        }
    }

    #[test]
    fn events_may_name_their_text_in_the_batch_string_table() {
        let by_ref = wire::UsageEvent {
            api: String::new(),
            path: String::new(),
            reason: String::new(),
            api_ref: 2,
            path_ref: 1,
            reason_ref: 3,
            ..event()
        };
        let req = wire::ReportEventsRequest {
            batch_id: uuid::Uuid::new_v4().to_string(),
            enforcer_id: "e1".into(),
            events: vec![by_ref.clone(), event()],
            strings: vec![
                "/v1/orders".into(),
                "billing".into(),
                "IP_NOT_ALLOWED_API".into(),
            ],
            ..Default::default()
        };
        let read = batch(req.clone(), SystemTime::now()).expect("valid");
        let e = &read.events[0];
        assert_eq!((e.api.as_str(), e.path.as_str()), ("billing", "/v1/orders"));
        assert_eq!(e.reason.as_str(), "IP_NOT_ALLOWED_API");
        assert_eq!(
            read.events[1].api, "orders",
            "an event's own text still counts"
        );

        let past_end = wire::ReportEventsRequest {
            events: vec![
                event(),
                wire::UsageEvent {
                    path_ref: 4,
                    ..by_ref
                },
            ],
            ..req
        };
        let err = batch(past_end, SystemTime::now()).unwrap_err();
        assert_eq!(err.fields[0].field, "events[1].path_ref");
        assert!(
            err.fields[0]
                .description
                .contains("past the batch's 3 strings"),
            "{err:?}"
        );
    }

    #[test]
    fn bad_events_are_named_by_index_and_field() {
        let mut bad_ip = event();
        bad_ip.client_ip = "nope".into();
        let req = wire::ReportEventsRequest {
            batch_id: uuid::Uuid::new_v4().to_string(),
            enforcer_id: "e1".into(),
            events: vec![event(), bad_ip],
            ..Default::default()
        };
        let err = batch(req, SystemTime::now()).unwrap_err();
        assert_eq!(err.fields[0].field, "events[1].client_ip");
    }

    #[test]
    fn any_drop_counts_an_enforcer_sends_are_read_without_overflow() {
        let now = SystemTime::now();
        let req = wire::ReportEventsRequest {
            batch_id: uuid::Uuid::new_v4().to_string(),
            enforcer_id: "e1".into(),
            dropped_allowed: u64::MAX,
            dropped_blocked: u64::MAX,
            ..Default::default()
        };
        let read = batch(req, now).expect("a batch of drops only");
        assert_eq!(
            (read.dropped_allowed, read.dropped_blocked),
            (u64::MAX, u64::MAX)
        );
        assert_eq!(read.dropped_window, Some((now, now)));
    }

    #[test]
    fn batch_ids_are_uuids() {
        let req = wire::ReportEventsRequest {
            batch_id: "not-a-uuid".into(),
            enforcer_id: "e1".into(),
            events: vec![event()],
            ..Default::default()
        };
        let err = batch(req, SystemTime::now()).unwrap_err();
        assert_eq!(err.fields[0].field, "batch_id");
    }

    #[test]
    fn drop_windows_default_to_arrival_and_are_put_in_order() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        let at = |s| time::to_timestamp(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s));
        let secs = |w: Option<(SystemTime, SystemTime)>| {
            w.map(|(f, l)| (time::to_millis(f) / 1000, time::to_millis(l) / 1000))
        };
        assert_eq!(drop_window(false, Some(&at(5)), Some(&at(6)), now), None);
        assert_eq!(secs(drop_window(true, None, None, now)), Some((1000, 1000)));
        assert_eq!(
            secs(drop_window(true, Some(&at(9)), Some(&at(5)), now)),
            Some((5, 9))
        );
        assert_eq!(
            secs(drop_window(true, Some(&at(7)), None, now)),
            Some((7, 7))
        );
    }
}
