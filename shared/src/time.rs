//! Instants as the index compares them: milliseconds since the Unix epoch.
//!
//! Expiry checks run on every request, so the index keeps plain integers
//! rather than `SystemTime`s.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (negative before it).
pub type UnixMillis = i64;

/// Sentinel for "never expires".
pub const NEVER: UnixMillis = i64::MAX;

/// Converts a `SystemTime` to Unix milliseconds, saturating at the ends.
pub fn to_millis(t: SystemTime) -> UnixMillis {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// Converts Unix milliseconds back to a `SystemTime`.
pub fn from_millis(ms: UnixMillis) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// Converts a protobuf timestamp to a `SystemTime`, or `None` when out of range.
pub fn from_timestamp(ts: &prost_types::Timestamp) -> Option<SystemTime> {
    SystemTime::try_from(*ts).ok()
}

/// Converts a `SystemTime` to a protobuf timestamp.
pub fn to_timestamp(t: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(to_millis(t), 1_700_000_000_123);
        assert_eq!(from_millis(1_700_000_000_123), t);
        assert_eq!(to_millis(from_millis(-5)), -5);
    }
}
