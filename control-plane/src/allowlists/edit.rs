//! [`Edit`]: replace a list, add, remove or change entries. Every problem is
//! reported against the request field that caused it (`entries[2].cidr`,
//! `cidrs[0]`), all at once, and nothing is changed.

use std::time::SystemTime;

use ipgate_shared::{Cidr, Entry, Label, ListRules, allowlist::Allowlist};

use crate::invalid::InvalidRequest;

/// One change to an allowlist, validated entry by entry already.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Replace the whole list and its report-only mode.
    Set(Allowlist),
    /// Add entries (an expired entry of the same network is replaced).
    Add(Vec<Entry>),
    /// Remove entries by network.
    Remove(Vec<Cidr>),
    /// Change one entry's label and/or expiry; `None` leaves it as it is,
    /// `Some(None)` clears the expiry.
    Update {
        cidr: Cidr,
        label: Option<Label>,
        expires_at: Option<Option<SystemTime>>,
    },
    /// Only drop the entries expired by now (the store's sweep).
    Expire,
}

impl Edit {
    /// The verb in audit actions (`api.allowlist.add`).
    pub fn verb(&self) -> &'static str {
        match self {
            Edit::Set(_) => "set",
            Edit::Add(_) => "add",
            Edit::Remove(_) | Edit::Expire => "remove",
            Edit::Update { .. } => "update",
        }
    }

    /// The list after this edit of `current` at `now`. Entries expired at
    /// `now` are dropped on the way (they match nothing) — unless they are
    /// all the list has left: an empty list lets every address through, and
    /// an expiry takes access away, it never opens a list to everyone. Such
    /// entries stay, matching nothing, until an operator changes the list.
    pub fn apply(
        &self,
        current: &Allowlist,
        rules: ListRules,
        now: SystemTime,
    ) -> Result<Allowlist, InvalidRequest> {
        let mut bad = InvalidRequest::default();
        let mut entries: Vec<Entry> = current.entries().to_vec();
        let mut report_only = current.report_only();
        match self {
            Edit::Set(list) => {
                entries = list.entries().to_vec();
                report_only = list.report_only();
            }
            Edit::Add(added) => {
                for (i, entry) in added.iter().enumerate() {
                    match entries.iter().position(|e| e.cidr() == entry.cidr()) {
                        Some(at) if entries[at].is_expired(now) => entries[at] = entry.clone(),
                        Some(_) => bad.add(
                            format!("entries[{i}].cidr"),
                            format!(
                                "{} is already on the list; update that entry to change its label or expiry",
                                entry.cidr()
                            ),
                        ),
                        None => entries.push(entry.clone()),
                    }
                }
            }
            Edit::Remove(cidrs) => {
                for (i, cidr) in cidrs.iter().enumerate() {
                    let before = entries.len();
                    entries.retain(|e| e.cidr() != *cidr);
                    if entries.len() == before && !cidrs[..i].contains(cidr) {
                        bad.add(format!("cidrs[{i}]"), not_on_list(*cidr));
                    }
                }
            }
            Edit::Update {
                cidr,
                label,
                expires_at,
            } => match entries.iter_mut().find(|e| e.cidr() == *cidr) {
                Some(entry) => {
                    let label = match label {
                        Some(l) => l.clone(),
                        // A stored label was valid when it was stored.
                        None => entry.label().parse().unwrap_or_default(),
                    };
                    let expires = expires_at.unwrap_or(entry.expires_at());
                    *entry = Entry::new(*cidr, label, expires);
                }
                None => bad.add("cidr", not_on_list(*cidr)),
            },
            // Dropped below, like after every edit.
            Edit::Expire => {}
        }
        if entries.iter().any(|e| !e.is_expired(now)) {
            entries.retain(|e| !e.is_expired(now));
        }
        if entries.len() > rules.max_entries {
            let field = match self {
                Edit::Set(_) => "allowlist.entries",
                _ => "entries",
            };
            bad.add(
                field,
                format!(
                    "the list would hold {} entries; at most {} are allowed",
                    entries.len(),
                    rules.max_entries
                ),
            );
        }
        bad.or_value(|| Some(Allowlist::new(entries, report_only)))
    }
}

fn not_on_list(cidr: Cidr) -> String {
    format!("{cidr} is not on the list")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn entry(cidr: &str, expires_at: Option<SystemTime>) -> Entry {
        Entry::new(cidr.parse().unwrap(), Label::default(), expires_at)
    }

    fn cidrs(list: &Allowlist) -> Vec<String> {
        list.entries()
            .iter()
            .map(|e| e.cidr().to_string())
            .collect()
    }

    #[test]
    fn add_appends_refuses_duplicates_and_replaces_expired() {
        let past = now() - Duration::from_secs(1);
        let current = Allowlist::new(
            vec![
                entry("203.0.113.5", None),
                entry("198.51.100.0/24", Some(past)),
            ],
            true,
        );
        let edit = Edit::Add(vec![
            entry("198.51.100.0/24", None),
            entry("192.0.2.1", None),
        ]);
        let list = edit.apply(&current, ListRules::for_keys(), now()).unwrap();
        assert_eq!(
            cidrs(&list),
            ["203.0.113.5/32", "198.51.100.0/24", "192.0.2.1/32"]
        );
        assert!(list.report_only());

        let dup = Edit::Add(vec![entry("192.0.2.9", None), entry("203.0.113.5", None)]);
        let err = dup
            .apply(&current, ListRules::for_keys(), now())
            .unwrap_err();
        assert_eq!(err.fields[0].field, "entries[1].cidr");
        assert!(err.fields[0].description.contains("203.0.113.5/32"));
    }

    #[test]
    fn limits_count_the_result() {
        let rules = ListRules {
            max_entries: 2,
            allow_private_ranges: false,
        };
        let current = Allowlist::new(vec![entry("203.0.113.5", None)], false);
        let edit = Edit::Add(vec![entry("192.0.2.1", None), entry("192.0.2.2", None)]);
        let err = edit.apply(&current, rules, now()).unwrap_err();
        assert_eq!(err.fields[0].field, "entries");
        assert!(err.fields[0].description.contains("at most 2"));
    }

    #[test]
    fn remove_and_update_name_absent_entries() {
        let current = Allowlist::new(vec![entry("203.0.113.5", None)], false);
        let remove = Edit::Remove(vec![
            "203.0.113.5".parse().unwrap(),
            "192.0.2.1".parse().unwrap(),
        ]);
        let err = remove
            .apply(&current, ListRules::for_keys(), now())
            .unwrap_err();
        assert_eq!(err.fields[0].field, "cidrs[1]");
        assert!(err.fields[0].description.contains("192.0.2.1/32"));
        let ok = Edit::Remove(vec!["203.0.113.5/32".parse().unwrap()]);
        assert!(
            ok.apply(&current, ListRules::for_keys(), now())
                .unwrap()
                .is_empty()
        );

        let later = now() + Duration::from_secs(60);
        let update = Edit::Update {
            cidr: "203.0.113.5".parse().unwrap(),
            label: Some("office".parse().unwrap()),
            expires_at: Some(Some(later)),
        };
        let list = update
            .apply(&current, ListRules::for_keys(), now())
            .unwrap();
        assert_eq!(list.entries()[0].label(), "office");
        assert_eq!(list.entries()[0].expires_at(), Some(later));
        let keep_label = Edit::Update {
            cidr: "203.0.113.5".parse().unwrap(),
            label: None,
            expires_at: Some(None),
        };
        let list = keep_label
            .apply(&list, ListRules::for_keys(), now())
            .unwrap();
        assert_eq!(list.entries()[0].label(), "office");
        assert_eq!(list.entries()[0].expires_at(), None);
        let absent = Edit::Update {
            cidr: "192.0.2.1".parse().unwrap(),
            label: None,
            expires_at: None,
        };
        let err = absent
            .apply(&current, ListRules::for_keys(), now())
            .unwrap_err();
        assert_eq!(err.fields[0].field, "cidr");
    }

    #[test]
    fn an_expiry_never_empties_a_list() {
        let past = now() - Duration::from_secs(1);
        let rules = ListRules::for_keys();
        // Expired entries go while a live one stays...
        let mixed = Allowlist::new(
            vec![entry("203.0.113.5", Some(past)), entry("192.0.2.1", None)],
            false,
        );
        assert_eq!(
            cidrs(&Edit::Expire.apply(&mixed, rules, now()).unwrap()),
            ["192.0.2.1/32"]
        );
        // ...but the last ones stay, matching nothing, so the list stays closed.
        let expired = Allowlist::new(vec![entry("203.0.113.5", Some(past))], false);
        assert_eq!(Edit::Expire.apply(&expired, rules, now()).unwrap(), expired);
        let remove_live = Edit::Remove(vec!["192.0.2.1".parse().unwrap()]);
        assert_eq!(
            cidrs(&remove_live.apply(&mixed, rules, now()).unwrap()),
            ["203.0.113.5/32"]
        );
        // An operator may still empty the list on purpose.
        let remove_all = Edit::Remove(vec!["203.0.113.5".parse().unwrap()]);
        assert!(remove_all.apply(&expired, rules, now()).unwrap().is_empty());
    }
}
