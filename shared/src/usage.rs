//! Usage events: one per decided request, allowed or blocked, sent by
//! enforcers and stored by the control plane.

use std::{net::IpAddr, time::SystemTime};

use crate::{
    decision::{Decision, Reason},
    key::KeyId,
    proto::sync::v1 as wire,
    time,
};

/// Longest request path kept in the log; longer paths are cut.
pub const MAX_PATH_CHARS: usize = 1024;
/// Longest method, API name or request id kept in the log.
pub const MAX_SHORT_CHARS: usize = 128;

/// One decided request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageEvent {
    pub request_id: String,
    pub time: SystemTime,
    /// The API named by the request (possibly unknown).
    pub api: String,
    pub key_id: Option<KeyId>,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub client_ip: IpAddr,
    pub reason: Reason,
    pub matched_label: String,
}

impl UsageEvent {
    /// The event for `decision`, cutting over-long fields to their limits.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        decision: &Decision<'_>,
        request_id: &str,
        time: SystemTime,
        api: &str,
        method: &str,
        path: &str,
        client_ip: IpAddr,
    ) -> Self {
        UsageEvent {
            request_id: cut(request_id, MAX_SHORT_CHARS),
            time,
            api: cut(api, MAX_SHORT_CHARS),
            key_id: decision.key_id,
            method: cut(method, MAX_SHORT_CHARS),
            path: cut(path, MAX_PATH_CHARS),
            status: decision.reason.http_status(),
            client_ip,
            reason: decision.reason,
            matched_label: decision.matched_label().to_owned(),
        }
    }
}

fn cut(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

/// A usage event that cannot be stored; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("usage event {field}: {message}")]
pub struct InvalidEvent {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl ToString) -> InvalidEvent {
    InvalidEvent {
        field,
        message: message.to_string(),
    }
}

fn bounded(field: &'static str, s: String, max_chars: usize) -> Result<String, InvalidEvent> {
    if s.chars().count() > max_chars {
        Err(invalid(
            field,
            format!("longer than {max_chars} characters"),
        ))
    } else {
        Ok(s)
    }
}

impl TryFrom<wire::UsageEvent> for UsageEvent {
    type Error = InvalidEvent;

    fn try_from(e: wire::UsageEvent) -> Result<Self, Self::Error> {
        let wire::UsageEvent {
            request_id,
            time: ts,
            api,
            api_key_id,
            method,
            path,
            status_code,
            client_ip,
            reason,
            matched_label,
        } = e;
        let time = ts
            .as_ref()
            .and_then(time::from_timestamp)
            .ok_or_else(|| invalid("time", "missing or out of range"))?;
        let key_id = match api_key_id.as_str() {
            "" => None,
            id => Some(id.parse().map_err(|e| invalid("api_key_id", e))?),
        };
        let status = u16::try_from(status_code)
            .ok()
            .filter(|s| (100..=599).contains(s))
            .ok_or_else(|| {
                invalid(
                    "status_code",
                    format!("{status_code} is not an HTTP status"),
                )
            })?;
        Ok(UsageEvent {
            request_id: bounded("request_id", request_id, MAX_SHORT_CHARS)?,
            time,
            api: bounded("api", api, MAX_SHORT_CHARS)?,
            key_id,
            method: bounded("method", method, MAX_SHORT_CHARS)?,
            path: bounded("path", path, MAX_PATH_CHARS)?,
            status,
            client_ip: client_ip
                .parse()
                .map_err(|_| invalid("client_ip", format!("{client_ip:?} is not an IP address")))?,
            reason: reason.parse().map_err(|e| invalid("reason", e))?,
            matched_label: bounded(
                "matched_label",
                matched_label,
                crate::entry::MAX_LABEL_CHARS,
            )?,
        })
    }
}

impl From<&UsageEvent> for wire::UsageEvent {
    fn from(e: &UsageEvent) -> Self {
        wire::UsageEvent {
            request_id: e.request_id.clone(),
            time: Some(time::to_timestamp(e.time)),
            api: e.api.clone(),
            api_key_id: e.key_id.map(|id| id.to_string()).unwrap_or_default(),
            method: e.method.clone(),
            path: e.path.clone(),
            status_code: u32::from(e.status),
            client_ip: e.client_ip.to_string(),
            reason: e.reason.as_str().to_owned(),
            matched_label: e.matched_label.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::PresentedKey;

    #[test]
    fn events_round_trip_and_long_fields_are_cut() {
        let d = Decision::unsynced(PresentedKey::Missing, false);
        let long_path = format!("/{}", "a".repeat(5000));
        let e = UsageEvent::record(
            &d,
            "req-1",
            time::from_millis(1_800_000_000_000),
            "orders",
            "GET",
            &long_path,
            "203.0.113.5".parse().unwrap(),
        );
        assert_eq!(e.path.chars().count(), MAX_PATH_CHARS);
        assert_eq!(e.status, 503);
        let wire = wire::UsageEvent::from(&e);
        assert_eq!(UsageEvent::try_from(wire), Ok(e));
    }

    #[test]
    fn bad_events_name_the_field() {
        let d = Decision::unsynced(PresentedKey::Missing, false);
        let e = UsageEvent::record(
            &d,
            "r",
            SystemTime::now(),
            "orders",
            "GET",
            "/",
            "203.0.113.5".parse().unwrap(),
        );
        let good = wire::UsageEvent::from(&e);
        type Spoil = fn(&mut wire::UsageEvent);
        let cases: [(&str, Spoil); 4] = [
            ("client_ip", |w| w.client_ip = "nope".into()),
            ("reason", |w| w.reason = "MAYBE".into()),
            ("status_code", |w| w.status_code = 9000),
            ("time", |w| w.time = None),
        ];
        for (field, spoil) in cases {
            let mut w = good.clone();
            spoil(&mut w);
            assert_eq!(UsageEvent::try_from(w).unwrap_err().field, field);
        }
    }
}
