//! An IP allowlist and the rules a submitted list must pass as a whole:
//! every entry valid, no duplicates, no more entries than the limit.

use std::{collections::HashMap, time::SystemTime};

use crate::entry::{Cidr, Entry, EntryError, Label};

/// Default limit of entries in one API key's allowlist.
pub const DEFAULT_MAX_KEY_ENTRIES: usize = 20;
/// Default limit of entries in one API's allowlist.
pub const DEFAULT_MAX_API_ENTRIES: usize = 1_000;

/// A validated allowlist. Empty means every address may pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowlist {
    entries: Vec<Entry>,
    report_only: bool,
}

impl Allowlist {
    /// A list from entries that were validated already (e.g. read back from
    /// the store or received from the control plane).
    pub fn new(entries: Vec<Entry>, report_only: bool) -> Self {
        Allowlist {
            entries,
            report_only,
        }
    }

    /// The entries, in the order given.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// True when the list is evaluated but never blocks.
    pub fn report_only(&self) -> bool {
        self.report_only
    }

    /// True when the list has no entries (and so lets every address through).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// An entry as submitted by an operator, before validation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawEntry {
    pub cidr: String,
    pub label: String,
    pub expires_at: Option<SystemTime>,
}

/// The rules the control plane applies to a submitted list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListRules {
    /// Most entries the list may hold.
    pub max_entries: usize,
    /// Accept private, link-local and unique-local ranges.
    pub allow_private_ranges: bool,
}

impl ListRules {
    /// Rules for an API key's list with the default limit.
    pub const fn for_keys() -> Self {
        ListRules {
            max_entries: DEFAULT_MAX_KEY_ENTRIES,
            allow_private_ranges: false,
        }
    }

    /// Rules for an API's list with the default limit.
    pub const fn for_apis() -> Self {
        ListRules {
            max_entries: DEFAULT_MAX_API_ENTRIES,
            allow_private_ranges: false,
        }
    }

    /// Validates one submitted entry.
    pub fn entry(&self, raw: &RawEntry, now: SystemTime) -> Result<Entry, EntryError> {
        let cidr = Cidr::parse_entry(&raw.cidr, self.allow_private_ranges)?;
        let label: Label = raw.label.parse()?;
        if raw.expires_at.is_some_and(|t| t <= now) {
            return Err(EntryError::ExpiryInPast);
        }
        Ok(Entry::new(cidr, label, raw.expires_at))
    }

    /// Validates a whole submitted list, reporting every bad entry at once.
    pub fn validate(
        &self,
        raw: &[RawEntry],
        report_only: bool,
        now: SystemTime,
    ) -> Result<Allowlist, AllowlistError> {
        let mut violations = Vec::new();
        if raw.len() > self.max_entries {
            violations.push(Violation {
                index: None,
                field: "entries",
                input: raw.len().to_string(),
                description: format!(
                    "the list has {} entries; at most {} are allowed",
                    raw.len(),
                    self.max_entries
                ),
            });
        }
        let mut entries = Vec::with_capacity(raw.len());
        let mut seen: HashMap<Cidr, usize> = HashMap::with_capacity(raw.len());
        for (index, raw_entry) in raw.iter().enumerate() {
            match self.entry(raw_entry, now) {
                Ok(entry) => {
                    if let Some(first) = seen.insert(entry.cidr(), index) {
                        violations.push(Violation {
                            index: Some(index),
                            field: "cidr",
                            input: raw_entry.cidr.clone(),
                            description: format!(
                                "{:?} duplicates entry {first} ({}); list each range once",
                                raw_entry.cidr,
                                entry.cidr()
                            ),
                        });
                    }
                    entries.push(entry);
                }
                Err(error) => violations.push(Violation {
                    index: Some(index),
                    field: error.field(),
                    input: match error.field() {
                        "label" => raw_entry.label.clone(),
                        _ => raw_entry.cidr.clone(),
                    },
                    description: error.to_string(),
                }),
            }
        }
        if violations.is_empty() {
            Ok(Allowlist::new(entries, report_only))
        } else {
            Err(AllowlistError { violations })
        }
    }
}

/// A submitted list that was refused; one violation per problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.summary())]
pub struct AllowlistError {
    pub violations: Vec<Violation>,
}

impl AllowlistError {
    fn summary(&self) -> String {
        let parts: Vec<String> = self
            .violations
            .iter()
            .map(|v| v.description.clone())
            .collect();
        format!("invalid allowlist: {}", parts.join("; "))
    }
}

/// One problem with a submitted list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Position of the bad entry, or `None` for the list as a whole.
    pub index: Option<usize>,
    /// Entry field concerned: `cidr`, `label`, `expires_at`, or `entries`.
    pub field: &'static str,
    /// The offending input, as given.
    pub input: String,
    /// What is wrong and what to do, as shown to the operator.
    pub description: String,
}

impl Violation {
    /// Field path relative to the allowlist, e.g. `entries[3].cidr`.
    pub fn path(&self) -> String {
        match self.index {
            Some(i) => format!("entries[{i}].{}", self.field),
            None => self.field.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn raw(cidr: &str) -> RawEntry {
        RawEntry {
            cidr: cidr.into(),
            ..RawEntry::default()
        }
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    #[test]
    fn a_valid_list_is_canonicalised() {
        let list = ListRules::for_keys()
            .validate(
                &[raw("203.0.113.5"), raw("::ffff:198.51.100.0/120")],
                false,
                now(),
            )
            .unwrap();
        let cidrs: Vec<String> = list
            .entries()
            .iter()
            .map(|e| e.cidr().to_string())
            .collect();
        assert_eq!(cidrs, ["203.0.113.5/32", "198.51.100.0/24"]);
    }

    #[test]
    fn every_bad_entry_gets_its_own_violation() {
        let err = ListRules::for_keys()
            .validate(
                &[raw("203.0.113.5"), raw("203.0.113.5/24"), raw("010.0.0.1")],
                false,
                now(),
            )
            .unwrap_err();
        let paths: Vec<String> = err.violations.iter().map(Violation::path).collect();
        assert_eq!(paths, ["entries[1].cidr", "entries[2].cidr"]);
        assert_eq!(err.violations[0].input, "203.0.113.5/24");
        assert!(err.violations[0].description.contains("use 203.0.113.0/24"));
        assert!(err.violations[1].description.contains("leading zero"));
    }

    #[test]
    fn duplicates_are_found_after_canonicalisation() {
        let err = ListRules::for_keys()
            .validate(
                &[
                    raw("203.0.113.5"),
                    raw("203.0.113.5/32"),
                    raw("::ffff:203.0.113.5"),
                ],
                false,
                now(),
            )
            .unwrap_err();
        assert_eq!(err.violations.len(), 2);
        assert!(err.violations[0].description.contains("duplicates entry 0"));
    }

    #[test]
    fn the_limit_is_enforced() {
        let list: Vec<RawEntry> = (0..21).map(|i| raw(&format!("203.0.113.{i}"))).collect();
        let err = ListRules::for_keys()
            .validate(&list, false, now())
            .unwrap_err();
        assert_eq!(err.violations.len(), 1);
        assert_eq!(err.violations[0].path(), "entries");
        assert!(err.violations[0].description.contains("at most 20"));
        assert!(
            ListRules::for_keys()
                .validate(&list[..20], false, now())
                .is_ok()
        );
        assert!(ListRules::for_apis().validate(&list, false, now()).is_ok());
    }

    #[test]
    fn private_ranges_need_the_override() {
        let strict = ListRules::for_keys();
        let err = strict
            .validate(&[raw("10.0.0.0/16")], false, now())
            .unwrap_err();
        assert!(
            err.violations[0]
                .description
                .contains("--allow-private-ranges")
        );
        let lenient = ListRules {
            allow_private_ranges: true,
            ..strict
        };
        assert!(
            lenient
                .validate(&[raw("10.0.0.0/16"), raw("fd00::/48")], false, now())
                .is_ok()
        );
        assert!(
            strict
                .validate(&[raw("127.0.0.1"), raw("::1")], false, now())
                .is_ok()
        );
    }

    /// The one violation a single-entry list gets under `rules`.
    fn description(rules: ListRules, cidr: &str) -> String {
        let err = rules.validate(&[raw(cidr)], false, now()).unwrap_err();
        assert_eq!(err.violations.len(), 1, "{cidr}: {err}");
        err.violations[0].description.clone()
    }

    #[test]
    fn the_private_range_rule_decides_when_it_is_in_force() {
        let strict = ListRules::for_apis();
        let lenient = ListRules {
            allow_private_ranges: true,
            ..strict
        };
        for cidr in ["10.0.0.0/8", "192.168.1.1/24", "fd00::1/48", "fe80::/9"] {
            let text = description(strict, cidr);
            assert!(
                text.starts_with(&format!("{cidr:?} lies in the ")),
                "{text}"
            );
            assert!(text.contains("--allow-private-ranges"), "{text}");
        }

        assert_eq!(
            description(lenient, "192.168.1.1/24"),
            "\"192.168.1.1/24\" has host bits set; use 192.168.1.0/24"
        );
        assert!(
            lenient
                .validate(&[raw("192.168.1.0/24")], false, now())
                .is_ok()
        );
        assert!(description(lenient, "10.0.0.0/8").contains("/9 or narrower"));
        assert!(lenient.validate(&[raw("10.0.0.0/9")], false, now()).is_ok());
        assert_eq!(
            description(lenient, "fd00::1/48"),
            "\"fd00::1/48\" has host bits set; use fd00::/48"
        );
        assert!(description(lenient, "fe80::/9").contains("/33 or narrower"));
    }

    #[test]
    fn labels_and_expiries_are_checked() {
        let long = RawEntry {
            label: "x".repeat(101),
            ..raw("203.0.113.5")
        };
        let past = RawEntry {
            expires_at: Some(now() - Duration::from_secs(1)),
            ..raw("203.0.113.6")
        };
        let err = ListRules::for_keys()
            .validate(&[long, past], false, now())
            .unwrap_err();
        let paths: Vec<String> = err.violations.iter().map(Violation::path).collect();
        assert_eq!(paths, ["entries[0].label", "entries[1].expires_at"]);
    }
}
