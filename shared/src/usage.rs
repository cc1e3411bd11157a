//! Usage events: one per decided request, allowed or blocked, sent by
//! enforcers and stored by the control plane; [`Door`], the enforcer's
//! front door each event came through; and [`ClientIpSource`], where the
//! door found the client address it decided on.

use std::{fmt, net::IpAddr, str::FromStr, time::SystemTime};

use crate::{decision::Reason, key::KeyId, proto::sync::v1 as wire, time};

/// Longest request path kept in the log; longer paths are cut.
pub const MAX_PATH_CHARS: usize = 1024;
/// Longest method, API name or request id kept in the log.
pub const MAX_SHORT_CHARS: usize = 128;

/// An enforcer's front door: how a request reached it. Every door names
/// itself on each event it records, so the usage log tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Door {
    /// The HTTP reverse proxy.
    Proxy,
    /// Envoy's external authorization.
    ExtAuthz,
    /// The HTTP auth endpoint for nginx `auth_request` and Traefik ForwardAuth.
    AuthRequest,
    /// The gRPC `ipgate.check.v1.CheckService`.
    Check,
}

/// What the usage log says for an event whose door is not known: sent by
/// an enforcer that did not name one, or naming one this build lacks.
pub const UNKNOWN_DOOR: &str = "unknown";

impl Door {
    /// Every door, in the order the proto numbers them.
    pub const ALL: [Door; 4] = [Door::Proxy, Door::ExtAuthz, Door::AuthRequest, Door::Check];

    /// The name the usage log, its filters, its CSV and the CLI use.
    pub fn as_str(self) -> &'static str {
        match self {
            Door::Proxy => "proxy",
            Door::ExtAuthz => "ext_authz",
            Door::AuthRequest => "auth_request",
            Door::Check => "check",
        }
    }

    /// The door a wire value names; `None` for `DOOR_UNSPECIFIED` and for
    /// numbers this build does not know.
    pub fn from_wire(value: i32) -> Option<Door> {
        match wire::Door::try_from(value).ok()? {
            wire::Door::Unspecified => None,
            wire::Door::Proxy => Some(Door::Proxy),
            wire::Door::ExtAuthz => Some(Door::ExtAuthz),
            wire::Door::AuthRequest => Some(Door::AuthRequest),
            wire::Door::Check => Some(Door::Check),
        }
    }

    /// The wire value of a door, `DOOR_UNSPECIFIED` for `None`.
    pub fn to_wire(door: Option<Door>) -> wire::Door {
        match door {
            None => wire::Door::Unspecified,
            Some(Door::Proxy) => wire::Door::Proxy,
            Some(Door::ExtAuthz) => wire::Door::ExtAuthz,
            Some(Door::AuthRequest) => wire::Door::AuthRequest,
            Some(Door::Check) => wire::Door::Check,
        }
    }

    /// The name the usage log stores for `door`: its own, or
    /// [`UNKNOWN_DOOR`].
    pub fn name(door: Option<Door>) -> &'static str {
        door.map_or(UNKNOWN_DOOR, Door::as_str)
    }
}

impl fmt::Display for Door {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a door.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a door: give one of proxy, ext_authz, auth_request or check")]
pub struct UnknownDoor(pub String);

impl FromStr for Door {
    type Err = UnknownDoor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Door::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownDoor(s.to_owned()))
    }
}

/// Where a door found the client address it decided on (docs/client-ip.md).
/// The enforcer's `client_ip::Source` says it for the proxy door; the check
/// door's caller names the address itself. The last five are fallbacks: a
/// trusted proxy's forwarding header could not be followed to a client, and
/// the request was decided on the last address known good.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientIpSource {
    /// The connection's peer (with `--proxy-protocol`, the PROXY header's
    /// source).
    Peer,
    /// A trusted proxy's `X-Forwarded-For`.
    XForwardedFor,
    /// A trusted proxy's `Forwarded` (`for=`).
    Forwarded,
    /// The header `--client-ip-header` names, from a trusted proxy.
    ClientIpHeader,
    /// The door's caller named it (the check door's `client_ip`).
    Named,
    /// Fallback: a trusted hop hid its client.
    UnknownHop,
    /// Fallback: a forwarding-header element is not an address.
    Malformed,
    /// Fallback: `X-Forwarded-For` and `Forwarded` disagree.
    Conflicting,
    /// Fallback: more trusted hops in a row than the enforcer walks.
    TooManyHops,
    /// Fallback: fewer `X-Forwarded-For` elements than `--trusted-hops`.
    TooFewHops,
}

/// What the usage log says for an event whose client-address source is not
/// known: sent by an enforcer that did not say, or naming one this build
/// lacks. No source is named so: a hop that hid its client is
/// `unknown-hop`, so the two never read as one.
pub const UNKNOWN_CLIENT_IP_SOURCE: &str = "unknown";

impl ClientIpSource {
    /// Every source, in the order the proto numbers them.
    pub const ALL: [ClientIpSource; 10] = [
        ClientIpSource::Peer,
        ClientIpSource::XForwardedFor,
        ClientIpSource::Forwarded,
        ClientIpSource::ClientIpHeader,
        ClientIpSource::Named,
        ClientIpSource::UnknownHop,
        ClientIpSource::Malformed,
        ClientIpSource::Conflicting,
        ClientIpSource::TooManyHops,
        ClientIpSource::TooFewHops,
    ];

    /// The name the usage log, its filters, its CSV, the CLI and the
    /// enforcer's own logs use; header-derived ones read like the header.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientIpSource::Peer => "peer",
            ClientIpSource::XForwardedFor => "x-forwarded-for",
            ClientIpSource::Forwarded => "forwarded",
            ClientIpSource::ClientIpHeader => "client-ip-header",
            ClientIpSource::Named => "named",
            ClientIpSource::UnknownHop => "unknown-hop",
            ClientIpSource::Malformed => "malformed",
            ClientIpSource::Conflicting => "conflicting",
            ClientIpSource::TooManyHops => "too-many-hops",
            ClientIpSource::TooFewHops => "too-few-hops",
        }
    }

    /// True when a forwarding header could not be followed to a client.
    pub fn is_fallback(self) -> bool {
        matches!(
            self,
            ClientIpSource::UnknownHop
                | ClientIpSource::Malformed
                | ClientIpSource::Conflicting
                | ClientIpSource::TooManyHops
                | ClientIpSource::TooFewHops
        )
    }

    /// The source a wire value names; `None` for
    /// `CLIENT_IP_SOURCE_UNSPECIFIED` and for numbers this build does not
    /// know.
    pub fn from_wire(value: i32) -> Option<ClientIpSource> {
        use wire::ClientIpSource as W;
        match W::try_from(value).ok()? {
            W::Unspecified => None,
            W::Peer => Some(ClientIpSource::Peer),
            W::XForwardedFor => Some(ClientIpSource::XForwardedFor),
            W::Forwarded => Some(ClientIpSource::Forwarded),
            W::ClientIpHeader => Some(ClientIpSource::ClientIpHeader),
            W::Named => Some(ClientIpSource::Named),
            W::UnknownHop => Some(ClientIpSource::UnknownHop),
            W::Malformed => Some(ClientIpSource::Malformed),
            W::Conflicting => Some(ClientIpSource::Conflicting),
            W::TooManyHops => Some(ClientIpSource::TooManyHops),
            W::TooFewHops => Some(ClientIpSource::TooFewHops),
        }
    }

    /// The wire value of a source, `CLIENT_IP_SOURCE_UNSPECIFIED` for `None`.
    pub fn to_wire(source: Option<ClientIpSource>) -> wire::ClientIpSource {
        use wire::ClientIpSource as W;
        match source {
            None => W::Unspecified,
            Some(ClientIpSource::Peer) => W::Peer,
            Some(ClientIpSource::XForwardedFor) => W::XForwardedFor,
            Some(ClientIpSource::Forwarded) => W::Forwarded,
            Some(ClientIpSource::ClientIpHeader) => W::ClientIpHeader,
            Some(ClientIpSource::Named) => W::Named,
            Some(ClientIpSource::UnknownHop) => W::UnknownHop,
            Some(ClientIpSource::Malformed) => W::Malformed,
            Some(ClientIpSource::Conflicting) => W::Conflicting,
            Some(ClientIpSource::TooManyHops) => W::TooManyHops,
            Some(ClientIpSource::TooFewHops) => W::TooFewHops,
        }
    }

    /// The name the usage log stores for `source`: its own, or
    /// [`UNKNOWN_CLIENT_IP_SOURCE`].
    pub fn name(source: Option<ClientIpSource>) -> &'static str {
        source.map_or(UNKNOWN_CLIENT_IP_SOURCE, ClientIpSource::as_str)
    }
}

impl fmt::Display for ClientIpSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a client-address source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a client-address source")]
pub struct UnknownClientIpSource(pub String);

impl FromStr for ClientIpSource {
    type Err = UnknownClientIpSource;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ClientIpSource::ALL
            .into_iter()
            .find(|source| source.as_str() == s)
            .ok_or_else(|| UnknownClientIpSource(s.to_owned()))
    }
}

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
    /// The door the request came through; `None` when the reporting
    /// enforcer did not say (stored as [`UNKNOWN_DOOR`]).
    pub door: Option<Door>,
    /// Where the door found `client_ip`; `None` when the reporting enforcer
    /// did not say (stored as [`UNKNOWN_CLIENT_IP_SOURCE`]).
    pub client_ip_source: Option<ClientIpSource>,
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

/// Puts back the text `event` names by reference into its batch's string
/// table `strings` (`ReportEventsRequest.strings`), so the event reads as
/// if it carried its fields itself. A reference past the table's end is
/// an invalid event, named by the reference's field.
pub fn resolve_refs(strings: &[String], event: &mut wire::UsageEvent) -> Result<(), InvalidEvent> {
    let fields: [(&'static str, &mut u32, &mut String); 6] = [
        ("api_ref", &mut event.api_ref, &mut event.api),
        (
            "api_key_id_ref",
            &mut event.api_key_id_ref,
            &mut event.api_key_id,
        ),
        ("method_ref", &mut event.method_ref, &mut event.method),
        ("path_ref", &mut event.path_ref, &mut event.path),
        ("reason_ref", &mut event.reason_ref, &mut event.reason),
        (
            "matched_label_ref",
            &mut event.matched_label_ref,
            &mut event.matched_label,
        ),
    ];
    for (field, reference, text) in fields {
        let at = std::mem::take(reference);
        if at == 0 {
            continue;
        }
        match strings.get(at as usize - 1) {
            Some(s) => s.clone_into(text),
            None => {
                return Err(invalid(
                    field,
                    format!("{at} is past the batch's {} strings", strings.len()),
                ));
            }
        }
    }
    Ok(())
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
            door,
            client_ip_source,
            // Resolved before (`resolve_refs`); left over, they name nothing.
            api_ref: _,
            api_key_id_ref: _,
            method_ref: _,
            path_ref: _,
            reason_ref: _,
            matched_label_ref: _,
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
            // Never a reason to refuse the batch: the event is still a
            // decided request, and the lockout preview needs every caller.
            door: Door::from_wire(door),
            // Descriptive like the door, so kept alike: a source this build
            // does not know is still a decided request from a real caller.
            client_ip_source: ClientIpSource::from_wire(client_ip_source),
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
            door: Door::to_wire(e.door).into(),
            client_ip_source: ClientIpSource::to_wire(e.client_ip_source).into(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event as the control plane reads it, refused as not synced.
    fn event(door: Door, time: SystemTime, path: &str, source: ClientIpSource) -> UsageEvent {
        UsageEvent {
            request_id: "req-1".into(),
            time,
            api: "orders".into(),
            key_id: None,
            method: "GET".into(),
            path: path.into(),
            status: 503,
            client_ip: "203.0.113.5".parse().unwrap(),
            reason: Reason::NotSynced,
            matched_label: String::new(),
            door: Some(door),
            client_ip_source: Some(source),
        }
    }

    #[test]
    fn events_round_trip_up_to_the_field_limits() {
        let longest = format!("/{}", "é".repeat(MAX_PATH_CHARS - 1));
        let e = event(
            Door::Proxy,
            time::from_millis(1_800_000_000_000),
            &longest,
            ClientIpSource::Named,
        );
        let wire = wire::UsageEvent::from(&e);
        assert_eq!(UsageEvent::try_from(wire.clone()), Ok(e));
        let longer = wire::UsageEvent {
            path: format!("{longest}a"),
            ..wire
        };
        assert_eq!(UsageEvent::try_from(longer).unwrap_err().field, "path");
    }

    #[test]
    fn bad_events_name_the_field() {
        let e = event(Door::Check, SystemTime::now(), "/", ClientIpSource::Named);
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

    #[test]
    fn doors_round_trip_and_an_unknown_one_is_kept_as_unknown() {
        for door in Door::ALL {
            assert_eq!(door.as_str().parse(), Ok(door));
            assert_eq!(
                Door::from_wire(Door::to_wire(Some(door)).into()),
                Some(door)
            );
        }
        assert!("Proxy".parse::<Door>().is_err());
        assert!(UNKNOWN_DOOR.parse::<Door>().is_err());
        let e = event(Door::Check, SystemTime::now(), "/", ClientIpSource::Named);
        assert_eq!(e.door, Some(Door::Check));
        let mut older = wire::UsageEvent::from(&e);
        // An enforcer built before doors were reported sends none; a newer
        // one may name a door this build does not know.
        for unsaid in [wire::Door::Unspecified as i32, 99] {
            older.door = unsaid;
            let stored = UsageEvent::try_from(older.clone()).expect("still a valid event");
            assert_eq!(stored.door, None);
            assert_eq!(Door::name(stored.door), UNKNOWN_DOOR);
        }
    }

    #[test]
    fn client_ip_sources_round_trip_and_an_unknown_one_is_kept_as_unknown() {
        let mut names = std::collections::HashSet::new();
        for source in ClientIpSource::ALL {
            assert_eq!(source.as_str().parse(), Ok(source));
            assert_eq!(
                ClientIpSource::from_wire(ClientIpSource::to_wire(Some(source)).into()),
                Some(source)
            );
            assert!(names.insert(source.as_str()), "{source} named twice");
        }
        // `unknown` means "not said", never a hop that hid its client.
        assert!(!names.contains(UNKNOWN_CLIENT_IP_SOURCE));
        assert!(UNKNOWN_CLIENT_IP_SOURCE.parse::<ClientIpSource>().is_err());
        assert!("Malformed".parse::<ClientIpSource>().is_err());
        let fallbacks: Vec<_> = ClientIpSource::ALL
            .into_iter()
            .filter(|s| s.is_fallback())
            .map(ClientIpSource::as_str)
            .collect();
        assert_eq!(
            fallbacks,
            [
                "unknown-hop",
                "malformed",
                "conflicting",
                "too-many-hops",
                "too-few-hops"
            ]
        );

        let e = event(
            Door::Proxy,
            SystemTime::now(),
            "/",
            ClientIpSource::Malformed,
        );
        assert_eq!(e.client_ip_source, Some(ClientIpSource::Malformed));
        let mut older = wire::UsageEvent::from(&e);
        assert_eq!(
            older.client_ip_source(),
            wire::ClientIpSource::Malformed,
            "the wire says it too"
        );
        // An enforcer built before sources were reported sends none; a newer
        // one may name a source this build does not know.
        for unsaid in [wire::ClientIpSource::Unspecified as i32, 99] {
            older.client_ip_source = unsaid;
            let stored = UsageEvent::try_from(older.clone()).expect("still a valid event");
            assert_eq!(stored.client_ip_source, None);
            assert_eq!(
                ClientIpSource::name(stored.client_ip_source),
                UNKNOWN_CLIENT_IP_SOURCE
            );
        }
    }
}
