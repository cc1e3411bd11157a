//! A usage event as the enforcer records it, once per request.
//!
//! Built on every request's path, so the common case touches no heap
//! (`enforcer/tests/no_allocation.rs` counts): the API slug and
//! the matched entry's label are the index's own shared copies, the key id
//! is 16 bytes inline, a generated request id is its 36 characters inline,
//! and the method and a path of up to 24 bytes live inline too
//! ([`CompactString`]). Only what a client sends beyond that (a longer
//! path, an unknown API, a proxy's own request id) is copied to the heap.
//! The reporter turns events into wire messages off the request path.

use std::{fmt, net::IpAddr, ops::Deref, sync::Arc, time::SystemTime};

use compact_str::CompactString;
use ipgate_shared::{
    ClientIpSource, Decision, Door, KeyId, Reason,
    usage::{MAX_PATH_CHARS, MAX_SHORT_CHARS},
};

/// One decided request, waiting to be reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub request_id: RequestId,
    pub time: SystemTime,
    /// The API named by the request (possibly unknown).
    pub api: Text,
    pub key_id: Option<KeyId>,
    pub method: Text,
    /// The path the decision read, without query string.
    pub path: Text,
    /// The status the client got: the decision's, or the upstream's.
    pub status: u16,
    pub client_ip: IpAddr,
    pub reason: Reason,
    /// The label of the entry that let the address through ("" when none).
    pub matched_label: Text,
    pub door: Door,
    pub client_ip_source: ClientIpSource,
}

/// What a door read of one request, for its event.
#[derive(Clone, Copy, Debug)]
pub struct Seen<'a> {
    pub door: Door,
    pub time: SystemTime,
    pub api: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub client_ip: IpAddr,
    pub client_ip_source: ClientIpSource,
}

impl Event {
    /// The event for `decision` on the request `seen`, cutting over-long
    /// fields to the usage log's limits.
    pub fn record(decision: &Decision<'_>, seen: Seen<'_>, request_id: RequestId) -> Self {
        Event {
            request_id,
            time: seen.time,
            api: match decision.api {
                Some(slug) => Text::Shared(Arc::clone(slug)),
                None => Text::cut(seen.api, MAX_SHORT_CHARS),
            },
            key_id: decision.key_id,
            method: Text::method(seen.method),
            path: Text::cut(seen.path, MAX_PATH_CHARS),
            status: decision.reason.http_status(),
            client_ip: seen.client_ip,
            reason: decision.reason,
            matched_label: decision
                .shared_label()
                .map_or(Text::EMPTY, |l| Text::Shared(Arc::clone(l))),
            door: seen.door,
            client_ip_source: seen.client_ip_source,
        }
    }
}

/// Text an event carries: shared with the index, or its own copy, inline
/// when short.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Text {
    /// The index's copy (an API slug, an entry's label).
    Shared(Arc<str>),
    /// Its own: inline up to 24 bytes, or a `&'static str`.
    Own(CompactString),
}

impl Text {
    /// The empty text.
    pub const EMPTY: Text = Text::Own(CompactString::const_new(""));

    /// At most `max_chars` characters of `s`.
    pub fn cut(s: &str, max_chars: usize) -> Text {
        let end = s.char_indices().nth(max_chars).map_or(s.len(), |(i, _)| i);
        Text::Own(CompactString::new(&s[..end]))
    }

    /// A method: the standard ones are static, others copied.
    fn method(m: &str) -> Text {
        const STANDARD: [&str; 9] = [
            "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
        ];
        match STANDARD.iter().find(|s| **s == m) {
            Some(s) => Text::Own(CompactString::const_new(s)),
            None => Text::cut(m, MAX_SHORT_CHARS),
        }
    }
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            Text::Shared(s) => s,
            Text::Own(s) => s,
        }
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

/// The id that ties a request's response headers, upstream request and
/// usage row together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestId {
    /// A fresh UUID v4, as text, inline.
    Generated([u8; uuid::fmt::Hyphenated::LENGTH]),
    /// An id chosen before the door (a trusted proxy's, a caller's), cut
    /// to the log's limit.
    Given(Arc<str>),
}

impl RequestId {
    /// A fresh random id (UUID v4) from the thread's generator: no system
    /// call and no heap.
    pub fn generate() -> Self {
        let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
        uuid.hyphenated().encode_lower(&mut text);
        RequestId::Generated(text)
    }

    /// `given` when there is one, cut to the log's limit; else a fresh id.
    pub fn given_or_generate(given: Option<&str>) -> Self {
        match given {
            Some(id) if !id.is_empty() => {
                RequestId::Given(Arc::from(&*Text::cut(id, MAX_SHORT_CHARS)))
            }
            _ => RequestId::generate(),
        }
    }
}

impl Deref for RequestId {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            // Only ever filled by `encode_lower`: ASCII hex and dashes.
            RequestId::Generated(text) => std::str::from_utf8(text).unwrap_or_default(),
            RequestId::Given(id) => id,
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

#[cfg(test)]
mod tests {
    use ipgate_shared::PresentedKey;

    use super::*;

    fn seen<'a>(method: &'a str, path: &'a str) -> Seen<'a> {
        Seen {
            door: Door::Proxy,
            time: SystemTime::UNIX_EPOCH,
            api: "orders",
            method,
            path,
            client_ip: "203.0.113.5".parse().unwrap(),
            client_ip_source: ClientIpSource::Peer,
        }
    }

    #[test]
    fn long_fields_are_cut_on_character_boundaries() {
        let d = Decision::unsynced(PresentedKey::Missing, false);
        let long_path = format!("/{}", "é".repeat(MAX_PATH_CHARS));
        let e = Event::record(&d, seen("GET", &long_path), RequestId::generate());
        assert_eq!(e.path.chars().count(), MAX_PATH_CHARS);
        assert!(long_path.starts_with(&*e.path));
        let odd = "X".repeat(MAX_SHORT_CHARS + 5);
        let e = Event::record(
            &d,
            seen(&odd, "/"),
            RequestId::given_or_generate(Some(&odd)),
        );
        assert_eq!(e.method.len(), MAX_SHORT_CHARS);
        assert_eq!(e.request_id.len(), MAX_SHORT_CHARS);
        assert_eq!(
            &*e.api, "orders",
            "an API the index does not know is kept as sent"
        );
        assert_eq!(e.status, 503);
    }

    #[test]
    fn generated_ids_are_distinct_uuids() {
        let a = RequestId::generate();
        let b = RequestId::generate();
        assert_ne!(a, b);
        for id in [&a, &b] {
            let uuid = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(uuid.get_version_num(), 4);
            assert_eq!(uuid.hyphenated().to_string(), **id);
        }
        assert_eq!(
            RequestId::given_or_generate(Some("lb-42")).to_string(),
            "lb-42"
        );
        assert!(matches!(
            RequestId::given_or_generate(Some("")),
            RequestId::Generated(_)
        ));
    }
}
