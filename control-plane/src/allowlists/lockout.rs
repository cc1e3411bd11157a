//! Lockout protection: which client addresses, seen making allowed
//! requests in the last 24 hours, a new list would start blocking. Both
//! lists are evaluated with the enforcers' own [`CompiledList`], at one
//! instant, so the preview agrees with what enforcers will do.

use std::{
    fmt::Write as _,
    net::IpAddr,
    time::{Duration, SystemTime},
};

use ipgate_shared::{
    allowlist::Allowlist,
    index::{CompiledList, ListMatch},
    time,
};

/// How far back the usage log is read for active callers.
pub const LOCKOUT_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Most callers a preview lists (the total counts them all).
pub const MAX_LISTED_CALLERS: usize = 100;
/// Most addresses an error message names (the details list every one listed).
const MAX_NAMED: usize = 20;

/// One client address's allowed requests in the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallerActivity {
    pub ip: IpAddr,
    pub requests: u64,
    pub last_seen: SystemTime,
}

/// Who a change starts blocking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lockout {
    /// Start of the window looked at.
    pub since: SystemTime,
    /// The busiest such callers first, at most [`MAX_LISTED_CALLERS`].
    pub callers: Vec<CallerActivity>,
    /// How many addresses in all.
    pub total: usize,
}

impl Lockout {
    /// Nobody blocked, looking back to `since`.
    pub fn none(since: SystemTime) -> Self {
        Lockout {
            since,
            callers: Vec::new(),
            total: 0,
        }
    }

    /// True when nobody active would be blocked.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The refusal, naming the addresses, as shown to the operator.
    pub fn message(&self) -> String {
        let mut message = format!(
            "this change would block {} that made allowed requests in the last 24 hours: ",
            plural(
                u64::try_from(self.total).unwrap_or(u64::MAX),
                "client address",
                "client addresses"
            )
        );
        for (i, caller) in self.callers.iter().take(MAX_NAMED).enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let requests = plural(caller.requests, "request", "requests");
            let _ = write!(message, "{sep}{} ({requests})", caller.ip);
        }
        let named = self.callers.len().min(MAX_NAMED);
        if self.total > named {
            let _ = write!(message, " and {} more", self.total - named);
        }
        message.push_str(
            "; check them with validate_only, or set acknowledge_lockout_risk to store the change anyway",
        );
        message
    }
}

/// The callers of `activity` that `old` lets through at `now` and `new` blocks.
pub fn preview(
    old: &Allowlist,
    new: &Allowlist,
    activity: Vec<CallerActivity>,
    since: SystemTime,
    now: SystemTime,
) -> Lockout {
    let (old, new) = (CompiledList::new(old), CompiledList::new(new));
    let now_ms = time::to_millis(now);
    let mut callers: Vec<CallerActivity> = activity
        .into_iter()
        .filter(|c| !blocks(&old, c.ip, now_ms) && blocks(&new, c.ip, now_ms))
        .collect();
    callers.sort_by(|a, b| {
        b.requests
            .cmp(&a.requests)
            .then(b.last_seen.cmp(&a.last_seen))
            .then(a.ip.cmp(&b.ip))
    });
    let total = callers.len();
    callers.truncate(MAX_LISTED_CALLERS);
    Lockout {
        since,
        callers,
        total,
    }
}

/// A list blocks an address when it has entries, is not report-only, and no
/// unexpired entry matches.
fn blocks(list: &CompiledList, ip: IpAddr, now_ms: time::UnixMillis) -> bool {
    !list.report_only() && matches!(list.lookup(ip, now_ms), ListMatch::NotMatched)
}

/// "1 request", "2 requests".
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use ipgate_shared::{Entry, Label};

    use super::*;

    fn list(cidrs: &[&str], report_only: bool) -> Allowlist {
        let entries = cidrs
            .iter()
            .map(|c| Entry::new(c.parse().unwrap(), Label::default(), None))
            .collect();
        Allowlist::new(entries, report_only)
    }

    fn seen(ip: &str, requests: u64) -> CallerActivity {
        CallerActivity {
            ip: ip.parse().unwrap(),
            requests,
            last_seen: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn only_callers_newly_blocked_are_listed_busiest_first() {
        let now = SystemTime::now();
        let activity = vec![
            seen("203.0.113.5", 3),
            seen("198.51.100.7", 10),
            seen("192.0.2.1", 1),
        ];
        // Old list: everyone passes (empty). New list: only 203.0.113.5.
        let l = preview(
            &list(&[], false),
            &list(&["203.0.113.5"], false),
            activity.clone(),
            now,
            now,
        );
        let ips: Vec<String> = l.callers.iter().map(|c| c.ip.to_string()).collect();
        assert_eq!(ips, ["198.51.100.7", "192.0.2.1"]);
        assert_eq!(l.total, 2);
        assert!(l.message().contains("198.51.100.7 (10 requests)"));
        assert_eq!(plural(1, "request", "requests"), "1 request");

        // Already blocked before: not newly blocked.
        let l = preview(
            &list(&["203.0.113.5"], false),
            &list(&["203.0.113.0/24"], false),
            activity.clone(),
            now,
            now,
        );
        assert!(l.is_empty());
        // Report-only blocks nobody.
        let l = preview(
            &list(&[], false),
            &list(&["203.0.113.5"], true),
            activity,
            now,
            now,
        );
        assert!(l.is_empty());
    }
}
