//! Which request id an HTTP door goes on with (docs/door-proxy.md).
//!
//! A proxy in front of the enforcer often stamps each request with an
//! `x-request-id`; keeping it ties the usage log to that proxy's logs and
//! the upstream's. The id is believed only from a peer in
//! `--trusted-proxies` — anyone else could use it to make their requests
//! look like someone else's in the usage log — and only when it is
//! well-formed, since it goes into headers and logs as it is. Otherwise the
//! door makes a fresh one.

use http::HeaderMap;

use super::forward::X_REQUEST_ID;

/// Longest request id kept, as the usage log keeps it.
pub const MAX_LEN: usize = 128;

/// True for 1 to [`MAX_LEN`] characters of `A-Z a-z 0-9 . _ : -`: enough
/// for UUIDs, ULIDs and the ids of common proxies, and nothing that could
/// split a header or a log line, or mean something in a query.
pub fn is_well_formed(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The request's own id, when it comes from a trusted proxy (`trusted`)
/// in exactly one well-formed `x-request-id` field; `None` means the door
/// makes one.
pub fn trusted(headers: &HeaderMap, trusted: bool) -> Option<&str> {
    if !trusted {
        return None;
    }
    let mut ids = headers.get_all(X_REQUEST_ID).iter();
    match (ids.next(), ids.next()) {
        (Some(id), None) => id.to_str().ok().filter(|id| is_well_formed(id)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn well_formed_ids() {
        for good in [
            "7f3c2a1e-0d4b-4c8e-9a55-2b7d3e1f0a9c",
            "01HZX3V9K2M4N6P8Q0R2S4T6V8",
            "req_1.2:3",
            "a",
            &"x".repeat(128),
        ] {
            assert!(is_well_formed(good), "{good}");
        }
        for bad in [
            "",
            &"x".repeat(129),
            "has space",
            "a/b",
            "a\"b",
            "ä",
            "a,b",
            "a\tb",
        ] {
            assert!(!is_well_formed(bad), "{bad:?}");
        }
    }

    #[test]
    fn only_one_well_formed_id_from_a_trusted_peer_is_kept() {
        let mut h = HeaderMap::new();
        assert_eq!(trusted(&h, true), None);
        h.append(X_REQUEST_ID, HeaderValue::from_static("lb-42"));
        assert_eq!(trusted(&h, true), Some("lb-42"));
        assert_eq!(
            trusted(&h, false),
            None,
            "untrusted peers' ids are replaced"
        );
        h.append(X_REQUEST_ID, HeaderValue::from_static("lb-43"));
        assert_eq!(trusted(&h, true), None, "two ids are none");

        let mut h = HeaderMap::new();
        h.append(X_REQUEST_ID, HeaderValue::from_static("bad id"));
        assert_eq!(trusted(&h, true), None);
    }
}
