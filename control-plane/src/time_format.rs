//! Instants as operators read them in messages and the audit log.

use std::time::SystemTime;

/// An instant as RFC 3339 UTC with milliseconds (`2026-05-01T12:00:00.250Z`).
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
