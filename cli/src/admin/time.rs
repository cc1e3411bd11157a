//! Times and durations on the command line: `2h`, `30m`, `7d` (humantime),
//! and RFC 3339 instants such as `2026-05-01T12:00:00Z` or
//! `2026-05-01T14:00:00+02:00`.

use std::time::{Duration, SystemTime};

use prost_types::Timestamp;

/// Parses a duration: `90s`, `15m`, `2h`, `7d`, `1h 30m`.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    humantime::parse_duration(input.trim())
        .map_err(|e| format!("{e}: expected a duration such as 30s, 15m, 2h or 7d"))
}

/// Parses an RFC 3339 instant, with `Z` or a numeric offset.
pub fn parse_instant(input: &str) -> Result<SystemTime, String> {
    let s = input.trim();
    let bad = |why: &str| {
        format!("{s:?} is not an RFC 3339 time ({why}); expected e.g. 2026-05-01T12:00:00Z")
    };
    // humantime reads UTC only: take a numeric offset off and apply it.
    let (utc_text, offset) = match split_offset(s) {
        Some((head, offset)) => (format!("{head}Z"), offset),
        None => (s.to_owned(), 0),
    };
    let utc = humantime::parse_rfc3339(&utc_text).map_err(|e| bad(&e.to_string()))?;
    let shift = Duration::from_secs(offset.unsigned_abs());
    if offset >= 0 {
        utc.checked_sub(shift)
    } else {
        utc.checked_add(shift)
    }
    .ok_or_else(|| bad("out of range"))
}

/// `2026-05-01T14:00:00+02:00` -> (`2026-05-01T14:00:00`, 7200).
fn split_offset(s: &str) -> Option<(&str, i64)> {
    let at = s.len().checked_sub(6)?;
    let (head, tail) = s.split_at_checked(at)?;
    let tail = tail.as_bytes();
    let sign = match tail[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    if tail[3] != b':' || head.len() < 19 {
        return None;
    }
    let num = |b: &[u8]| std::str::from_utf8(b).ok()?.parse::<i64>().ok();
    let hours = num(&tail[1..3])?;
    let minutes = num(&tail[4..6])?;
    Some((head, sign * (hours * 3600 + minutes * 60)))
}

/// Parses a point in time: an RFC 3339 instant, or a duration meaning that
/// long ago (`24h` = 24 hours before now).
pub fn parse_time_or_ago(input: &str) -> Result<Timestamp, String> {
    if let Ok(ago) = humantime::parse_duration(input.trim()) {
        let at = SystemTime::now()
            .checked_sub(ago)
            .ok_or_else(|| format!("{input:?} reaches back before 1970"))?;
        return Ok(Timestamp::from(at));
    }
    parse_instant(input).map(Timestamp::from).map_err(|_| {
        format!(
            "{input:?} is neither a duration (24h, 7d) nor an RFC 3339 time (2026-05-01T12:00:00Z)"
        )
    })
}

/// Parses an RFC 3339 instant as a protobuf timestamp.
pub fn parse_timestamp(input: &str) -> Result<Timestamp, String> {
    parse_instant(input).map(Timestamp::from)
}

/// An expiry from `--expires-in` or `--expires-at` (clap keeps them exclusive).
pub fn expiry(expires_in: Option<Duration>, expires_at: Option<Timestamp>) -> Option<Timestamp> {
    expires_at.or_else(|| expires_in.map(|d| Timestamp::from(SystemTime::now() + d)))
}

/// A duration as a protobuf duration.
pub fn proto_duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_applied() {
        let z = parse_instant("2026-05-01T12:00:00Z").unwrap();
        assert_eq!(parse_instant("2026-05-01T14:00:00+02:00").unwrap(), z);
        assert_eq!(parse_instant("2026-05-01T07:30:00-04:30").unwrap(), z);
        assert_eq!(parse_instant("2026-05-01T12:00:00+00:00").unwrap(), z);
    }

    #[test]
    fn bad_times_say_what_is_expected() {
        let err = parse_instant("tomorrow").unwrap_err();
        assert!(err.contains("RFC 3339"), "{err}");
        assert!(parse_time_or_ago("soon").unwrap_err().contains("24h"));
    }

    #[test]
    fn durations_mean_ago() {
        let t = parse_time_or_ago("1h").unwrap();
        let at = SystemTime::try_from(t).unwrap();
        let ago = SystemTime::now().duration_since(at).unwrap();
        assert!(ago >= Duration::from_secs(3600) && ago < Duration::from_secs(3700));
    }
}
