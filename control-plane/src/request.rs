//! Checks every admin request shares: texts, etags, allowlists and their
//! entries, scopes, routes, instants, page sizes. Each concern's module
//! converts its own requests with these, destructuring every field so a
//! new proto field breaks the build until someone decides what it means;
//! every bad field is reported at once, with its path.

use std::time::SystemTime;

use ipgate_shared::{
    Entry, Revision, RouteRule, Scope,
    allowlist::{Allowlist, ListRules, RawEntry},
    proto::admin::v1 as admin,
    time,
};

use crate::{invalid::InvalidRequest, page};

/// Longest name of an API, key, token or tenant, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest key description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1000;
/// Most scopes one key may carry.
pub const MAX_SCOPES: usize = 64;
/// Most route rules one API may have.
pub const MAX_ROUTES: usize = 1000;

/// A printable, bounded text, trimmed.
pub fn text(s: &str, max_chars: usize) -> Result<String, String> {
    let chars = s.chars().count();
    if chars > max_chars {
        Err(format!(
            "{chars} characters long; at most {max_chars} are allowed"
        ))
    } else if s.chars().any(char::is_control) {
        Err("contains a control character; use printable characters only".to_owned())
    } else {
        Ok(s.trim().to_owned())
    }
}

/// An etag: empty for "unconditional", otherwise the revision it was read at.
/// `Some(None)` is unconditional; `None` means it was bad (and noted).
pub fn etag(bad: &mut InvalidRequest, tag: &str) -> Option<Option<Revision>> {
    if tag.is_empty() {
        return Some(None);
    }
    bad.check(
        "etag",
        tag.parse::<u64>().map(|n| Some(Revision::new(n))).map_err(|_| {
            format!("{tag:?} is not an etag this control plane gave out; pass back the etag read with the object, or none")
        }),
    )
}

/// Validates a submitted list as a whole; each bad entry is reported under
/// `field` (`allowlist.entries[2].cidr`). A missing list is an empty one.
pub fn allowlist(
    bad: &mut InvalidRequest,
    field: &str,
    list: Option<admin::Allowlist>,
    rules: ListRules,
    now: SystemTime,
) -> Option<Allowlist> {
    let admin::Allowlist {
        entries,
        report_only,
    } = list.unwrap_or_default();
    let raw = raw_entries(bad, &format!("{field}.entries"), entries)?;
    match rules.validate(&raw, report_only, now) {
        Ok(list) => Some(list),
        Err(e) => {
            for v in e.violations {
                bad.add(format!("{field}.{}", v.path()), v.description);
            }
            None
        }
    }
}

/// Validates entries to add (`entries[1].cidr`), as a list of their own.
pub fn entries(
    bad: &mut InvalidRequest,
    entries: Vec<admin::AllowlistEntry>,
    rules: ListRules,
    now: SystemTime,
) -> Option<Vec<Entry>> {
    if entries.is_empty() {
        bad.add("entries", "no entries given; add at least one");
        return None;
    }
    let raw = raw_entries(bad, "entries", entries)?;
    match rules.validate(&raw, false, now) {
        Ok(list) => Some(list.entries().to_vec()),
        Err(e) => {
            for v in e.violations {
                bad.add(v.path(), v.description);
            }
            None
        }
    }
}

/// Entries as submitted; `created_at`/`created_by` are output only and
/// ignored on input. `None` when an expiry was unreadable (and noted).
fn raw_entries(
    bad: &mut InvalidRequest,
    field: &str,
    entries: Vec<admin::AllowlistEntry>,
) -> Option<Vec<RawEntry>> {
    let mut ok = true;
    let raw = entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            let admin::AllowlistEntry {
                cidr,
                label,
                expires_at,
                created_at: _,
                created_by: _,
            } = entry;
            let expires_at = expires_at.and_then(|ts| {
                let t = time::from_timestamp(&ts);
                if t.is_none() {
                    ok = false;
                    bad.add(format!("{field}[{i}].expires_at"), "timestamp out of range");
                }
                t
            });
            RawEntry {
                cidr,
                label,
                expires_at,
            }
        })
        .collect();
    ok.then_some(raw)
}

/// Route rules, each checked (`routes[2]`).
pub fn routes(
    bad: &mut InvalidRequest,
    field: &str,
    routes: Vec<admin::RouteRule>,
) -> Option<Vec<RouteRule>> {
    if routes.len() > MAX_ROUTES {
        bad.add(
            field,
            format!("{} route rules given; at most {MAX_ROUTES}", routes.len()),
        );
    }
    let parsed: Vec<Option<RouteRule>> = routes
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let admin::RouteRule {
                method,
                path_prefix,
                scope,
            } = r;
            bad.check(
                format!("{field}[{i}]"),
                RouteRule::new(&method, &path_prefix, &scope),
            )
        })
        .collect();
    parsed.into_iter().collect()
}

/// Scopes, each checked (`scopes[1]`), sorted and without duplicates.
pub fn scopes(bad: &mut InvalidRequest, field: &str, scopes: &[String]) -> Option<Vec<Scope>> {
    if scopes.len() > MAX_SCOPES {
        bad.add(
            field,
            format!("{} scopes given; at most {MAX_SCOPES}", scopes.len()),
        );
    }
    let mut parsed: Vec<Option<Scope>> = scopes
        .iter()
        .enumerate()
        .map(|(i, s)| bad.check(format!("{field}[{i}]"), s.parse::<Scope>()))
        .collect();
    parsed.sort();
    parsed.dedup();
    parsed.into_iter().collect()
}

/// An optional instant that must lie after `now` (an expiry).
pub fn future(
    bad: &mut InvalidRequest,
    field: &str,
    ts: Option<prost_types::Timestamp>,
    now: SystemTime,
) -> Option<Option<SystemTime>> {
    match ts.map(|ts| time::from_timestamp(&ts)) {
        None => Some(None),
        Some(None) => {
            bad.add(field, "timestamp out of range");
            None
        }
        Some(Some(t)) if t <= now => {
            bad.add(
                field,
                format!("{field} is in the past; give a future instant or none"),
            );
            None
        }
        Some(Some(t)) => Some(Some(t)),
    }
}

/// A time range as Unix milliseconds: start inclusive, end exclusive.
pub fn time_range(
    bad: &mut InvalidRequest,
    start: Option<prost_types::Timestamp>,
    end: Option<prost_types::Timestamp>,
) -> Option<(Option<i64>, Option<i64>)> {
    let mut instant = |field: &str, ts: Option<prost_types::Timestamp>| match ts {
        None => Some(None),
        Some(ts) => bad.check(
            field,
            time::from_timestamp(&ts)
                .map(|t| Some(time::to_millis(t)))
                .ok_or("timestamp out of range"),
        ),
    };
    let (start, end) = (instant("start_time", start)?, instant("end_time", end)?);
    if let (Some(s), Some(e)) = (start, end)
        && e <= s
    {
        bad.add(
            "end_time",
            "end_time is not after start_time; the range would be empty",
        );
        return None;
    }
    Some((start, end))
}

/// A page size: 0 means the default.
pub fn page_size(bad: &mut InvalidRequest, n: u32) -> Option<u32> {
    bad.check("page_size", page::size(n))
}

/// A text filter: `None` when empty.
pub fn nonempty(s: String) -> Option<String> {
    let s = s.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn entry(cidr: &str) -> admin::AllowlistEntry {
        admin::AllowlistEntry {
            cidr: cidr.into(),
            ..Default::default()
        }
    }

    #[test]
    fn every_bad_entry_is_reported_with_its_path() {
        let mut bad = InvalidRequest::default();
        let list = admin::Allowlist {
            entries: vec![
                entry("203.0.113.5"),
                entry("203.0.113.5/24"),
                entry("127.1"),
            ],
            report_only: false,
        };
        assert!(
            allowlist(
                &mut bad,
                "allowlist",
                Some(list),
                ListRules::for_keys(),
                now()
            )
            .is_none()
        );
        let fields: Vec<&str> = bad.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            ["allowlist.entries[1].cidr", "allowlist.entries[2].cidr"]
        );
        assert!(bad.fields[0].description.contains("203.0.113.0/24"));

        let mut bad = InvalidRequest::default();
        assert!(
            entries(
                &mut bad,
                vec![entry("::ffff:203.0.113.5"), entry("x")],
                ListRules::for_keys(),
                now()
            )
            .is_none()
        );
        assert_eq!(bad.fields[0].field, "entries[1].cidr");
    }

    #[test]
    fn etags_instants_and_pages_are_checked() {
        let mut bad = InvalidRequest::default();
        assert_eq!(etag(&mut bad, ""), Some(None));
        assert_eq!(etag(&mut bad, "7"), Some(Some(Revision::new(7))));
        assert_eq!(etag(&mut bad, "x"), None);
        let past = Some(time::to_timestamp(now() - Duration::from_secs(1)));
        assert_eq!(future(&mut bad, "expires_at", past, now()), None);
        assert_eq!(page_size(&mut bad, 0), Some(page::DEFAULT_PAGE_SIZE));
        assert_eq!(page_size(&mut bad, 1001), None);
        let t = |s| Some(time::to_timestamp(now() + Duration::from_secs(s)));
        assert_eq!(time_range(&mut bad, t(2), t(1)), None);
        let fields: Vec<&str> = bad.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["etag", "expires_at", "page_size", "end_time"]);
    }
}
